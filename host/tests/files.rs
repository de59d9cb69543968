//! `files` mounts: what a component reads at `/`, copied at load.

mod common;
use common::*;

fn app_with_files() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in [("static/index.html", "<h1>shop</h1>"), ("static/private.key", "secret"), ("config/app.json", "{\"a\":1}")] {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let manifest = dir.path().join("spin.toml");
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "files"
[[trigger.http]]
route = "/probe/..."
component = "probe"
[component.probe]
source = {:?}
files = ["static/**/*", {{ source = "config", destination = "/etc/app" }}]
exclude_files = ["**/*.key"]
"#,
        wasm("guest-probe")
    );
    std::fs::write(&manifest, text).unwrap();
    (dir, manifest)
}

fn read(host: &Host, path: &str) -> Reply {
    get(&host.url(&format!("/probe/file/{path}")))
}

#[test]
fn a_component_reads_its_files_and_nothing_else() {
    let (dir, manifest) = app_with_files();
    for strict in [false, true] {
        let mut config = HostConfig::default();
        if strict {
            config = config.arg("--max-instance-reuse-count").arg("1").arg("--max-instance-concurrent-reuse-count").arg("1");
        }
        let host = Host::start(&manifest, config);
        assert_eq!(read(&host, "static/index.html").json()["text"], "<h1>shop</h1>");
        assert_eq!(read(&host, "etc/app/app.json").json()["text"], "{\"a\":1}");
        assert_eq!(read(&host, "static/private.key").status, 404, "excluded");
        assert_eq!(read(&host, "spin.toml").status, 404, "the app directory itself is not mounted");
        assert_eq!(read(&host, "etc/passwd").status, 404, "nor is the host's file system");
        // Copied at load: a change on disk is not seen until the next start.
        std::fs::write(dir.path().join("static/index.html"), "changed").unwrap();
        assert_eq!(read(&host, "static/index.html").json()["text"], "<h1>shop</h1>");
        std::fs::write(dir.path().join("static/index.html"), "<h1>shop</h1>").unwrap();
    }
}

#[test]
fn a_missing_mount_source_stops_the_start() {
    let (dir, manifest) = app_with_files();
    std::fs::remove_dir_all(dir.path().join("config")).unwrap();
    let mut host = Host::spawn(&manifest, HostConfig::default());
    assert_eq!(host.wait_exit(std::time::Duration::from_secs(60)), Some(1));
    let logs = host.logs();
    assert!(logs.contains("component.probe") && logs.contains("files[1].source: `config` does not exist"), "{logs}");
}

/// `files` entries that reach outside the app directory stop the start,
/// naming the entry, and leave the host's files as they were.
#[test]
fn mounts_from_outside_the_app_directory_stop_the_start_and_touch_nothing() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let (dir, manifest) = app_with_files();
    std::os::unix::fs::symlink(&victim, dir.path().join("static/link.txt")).unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap();
    let original = r#"files = ["static/**/*", { source = "config", destination = "/etc/app" }]"#;
    let glob = format!("{}/*.txt", outside.path().display());
    for (files, expected) in [
        // Once truncated the host file: source and destination were the same file.
        (format!("files = [{victim:?}]"), "files[0]: `"),
        // Once panicked.
        (format!("files = [{glob:?}]"), "is an absolute path"),
        // Once handed the guest a file outside the app directory.
        (r#"files = [{ source = "../outside.txt", destination = "/x" }]"#.to_string(), "files[0].source: `../outside.txt` contains `..`"),
        (format!("files = [{{ source = {victim:?}, destination = \"/x\" }}]"), "files[0].source"),
        (r#"files = ["static/link.txt"]"#.to_string(), "leads outside"),
        (r#"files = ["static"]"#.to_string(), "leads outside"),
    ] {
        std::fs::write(&manifest, text.replace(original, &files)).unwrap();
        let mut host = Host::spawn(&manifest, HostConfig::default());
        assert_eq!(host.wait_exit(std::time::Duration::from_secs(60)), Some(1), "{files}: {}", host.logs());
        let logs = host.logs();
        assert!(logs.contains("component.probe") && logs.contains(expected), "{files}: expected `{expected}` in {logs}");
        assert!(!logs.contains("panicked"), "{logs}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me", "{files}");
    }
}
