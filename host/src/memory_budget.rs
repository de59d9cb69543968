//! How many instances may run at once within the memory the process is
//! given: a container's limit (the pod's `resources.limits.memory`, which
//! the runtime writes into the cgroup) over each instance's cap
//! (`--max-instance-memory`, SpinKube's `invocationLimits.memory`). Without
//! such a bound, a burst of Redis messages started 256 handlers in a
//! 128 MiB pod and the kernel killed it, losing every message in flight.

use std::path::Path;

/// The cgroup memory limit of this process, if it has one (cgroup v2, then
/// v1); `None` outside a container or when unlimited.
pub fn cgroup_memory_limit() -> Option<u64> {
    limit_in(Path::new("/sys/fs/cgroup/memory.max")).or_else(|| limit_in(Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes")))
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
