//! How many instances may run at once within the memory the process is
//! given: a container's limit (the pod's `resources.limits.memory`, which
//! the runtime writes into the cgroup) over each instance's cap
//! (`--max-instance-memory`, SpinKube's `invocationLimits.memory`). Without
//! such a bound, a burst of Redis messages started 256 handlers in a
//! 128 MiB pod and the kernel killed it, losing every message in flight.

use std::path::Path;

/// The cgroup memory limit of this process, if it has one (cgroup v2, then
/// v1); `None` when nothing limits it.
pub fn cgroup_memory_limit() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    limit_of(Path::new("/sys/fs/cgroup"), &membership)
}

/// The tightest memory limit from this process's cgroup (as
/// `/proc/self/cgroup` names it) up to the root of the hierarchy mounted at
/// `mount`: a limit on a parent (a pod, a systemd slice) binds its children
/// too. In a container with a cgroup namespace the cgroup is the mount's
/// root; a service on a host is deeper; and where a container sees the
/// host's path but only its own cgroup is mounted, the path is missing and
/// the walk up reaches the mount's root, which is that cgroup.
fn limit_of(mount: &Path, membership: &str) -> Option<u64> {
    // v2: the one line `0::/path`.
    if let Some(path) = membership.lines().find_map(|line| line.strip_prefix("0::")) {
        if let Some(limit) = tightest(mount, path, "memory.max") {
            return Some(limit);
        }
    }
    // v1: `N:controllers:/path`, the memory controller's hierarchy.
    let path = membership.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|c| c == "memory").then_some(path)
    })?;
    tightest(&mount.join("memory"), path, "memory.limit_in_bytes")
}

/// The smallest limit in `file` of the directory `path` under `mount` and of
/// each of its parents up to `mount`.
fn tightest(mount: &Path, path: &str, file: &str) -> Option<u64> {
    // The kernel writes no `..` there; refuse one rather than read above the mount.
    if path.split('/').any(|part| part == "..") {
        return None;
    }
    let mut dir = mount.join(path.trim_start_matches('/'));
    let mut tightest: Option<u64> = None;
    loop {
        if let Some(limit) = limit_in(&dir.join(file)) {
            tightest = Some(tightest.map_or(limit, |t| t.min(limit)));
        }
        if dir == mount || !dir.pop() {
            return tightest;
        }
    }
}

fn limit_in(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    // v2 says "max"; v1 says a number near u64::MAX when unlimited.
    text.trim().parse::<u64>().ok().filter(|&limit| limit < 1 << 60)
}

/// Instances that fit when each may grow to `per_instance` bytes: half the
/// limit is kept for the host itself (compiled code, connections, buffers;
/// a whole app's host peaked near 100 MiB while compiling), the rest is
/// shared out. At least one, at most `ceiling`; `ceiling` without a limit.
pub fn instances_that_fit(limit: Option<u64>, per_instance: usize, ceiling: usize) -> usize {
    match limit {
        None => ceiling,
        Some(limit) => usize::try_from(limit / 2 / (per_instance.max(1) as u64)).unwrap_or(usize::MAX).clamp(1, ceiling),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_fits_what_its_limit_allows_and_never_nothing() {
        const MIB: u64 = 1 << 20;
        // deploy/overlays/dev: 128 MiB pods, 32 MiB per instance.
        assert_eq!(instances_that_fit(Some(128 * MIB), 32 << 20, 256), 2);
        assert_eq!(instances_that_fit(Some(1024 * MIB), 32 << 20, 256), 16);
        assert_eq!(instances_that_fit(Some(16 * MIB), 32 << 20, 256), 1);
        assert_eq!(instances_that_fit(None, 32 << 20, 256), 256);
        assert_eq!(instances_that_fit(Some(u64::MAX >> 4), 1, 256), 256);
    }

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn the_tightest_limit_on_the_way_up_from_the_process_cgroup_counts() {
        const MIB: u64 = 1 << 20;
        // cgroup v2, a service on a host: its own limit, and a tighter one on its slice.
        let host = tempfile::tempdir().unwrap();
        write(host.path(), "system.slice/wharf.service/memory.max", &format!("{}\n", 512 * MIB));
        write(host.path(), "system.slice/memory.max", &format!("{}\n", 256 * MIB));
        write(host.path(), "user.slice/memory.max", &format!("{}\n", MIB));
        assert_eq!(limit_of(host.path(), "0::/system.slice/wharf.service\n"), Some(256 * MIB));
        assert_eq!(limit_of(host.path(), "0::/init.scope\n"), None, "no limit on its way up");
        // A container with its own cgroup namespace: the mount's root.
        let pod = tempfile::tempdir().unwrap();
        write(pod.path(), "memory.max", &format!("{}\n", 128 * MIB));
        assert_eq!(limit_of(pod.path(), "0::/\n"), Some(128 * MIB));
        // cgroup v1 where the container sees the host's path but only its
        // own cgroup is mounted: the walk up finds the mount's root.
        let v1 = tempfile::tempdir().unwrap();
        write(v1.path(), "memory/memory.limit_in_bytes", &format!("{}\n", 64 * MIB));
        let membership = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/docker/abc\n";
        assert_eq!(limit_of(v1.path(), membership), Some(64 * MIB));
        assert_eq!(limit_of(v1.path(), "4:memory:/../../etc\n"), None, "never read above the mount");
        assert_eq!(limit_of(v1.path(), ""), None);
    }

    #[test]
    fn limits_read_as_cgroups_write_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("limit");
        for (text, limit) in [("134217728\n", Some(134_217_728)), ("max\n", None), ("9223372036854771712\n", None), ("", None)] {
            std::fs::write(&file, text).unwrap();
            assert_eq!(limit_in(&file), limit, "{text:?}");
        }
    }
}
