//! `spin up` and `wharf up` on one state directory share their key-value
//! data (issue 13), which only holds if `wharf`'s embedded store has Spin's
//! own on-disk layout. The WASIp2 probe runs on real Spin 3.6.3, then on
//! `wharf`, then on Spin again, each on the same state dir and runtime
//! config: values and `wasi:keyvalue` counters written by one runtime are
//! read, and counted on, by the other, in the `default` store
//! (`<state-dir>/sqlite_key_value.db`) and in a `type = "spin"` store of the
//! runtime config that Spin and `wharf` both place in that same file.
//!
//! Spin comes from `../shared/spin` (next to the workspace); where it is
//! absent, the test prints one line saying it was skipped.

mod common;
use common::*;
use std::path::Path;

const TEST: &str = "spin_and_wharf_share_key_value_data_on_one_state_dir";

/// The probe with both stores, and the runtime config placing `shared` in
/// the file of `default`.
fn app(state: &Path) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "key-value-shared-with-spin"
[[trigger.http]]
route = "/..."
component = "probe"
[component.probe]
source = "{probe}"
key_value_stores = ["default", "shared"]
"#,
        probe = wasm("guest-probe-p2").display()
    );
    let (dir, manifest) = manifest_dir(&text);
    let runtime_config = dir.path().join("runtime-config.toml");
    let shared = format!("[key_value_store.shared]\ntype = \"spin\"\npath = \"{}\"\n", state.join("sqlite_key_value.db").display());
    std::fs::write(&runtime_config, shared).unwrap();
    (dir, manifest, runtime_config)
}

fn spin_up(binary: &str, manifest: &Path, runtime_config: &Path, state: &Path) -> SpinUp {
    SpinUp::up_with(binary, manifest, state, &["--runtime-config-file".as_ref(), runtime_config.as_os_str()], "spin up (probe-p2)")
}

/// The probe's answer on `url(path)`: (status, body).
fn call(method: &str, url: &str, body: Option<&[u8]>) -> (u16, String) {
    let reply = request(method, url, &[], body);
    (reply.status, reply.body)
}

fn ok(body: &str) -> (u16, String) {
    (200, body.to_string())
}

/// A counter as `get` returns it from Spin's SQLite store: 8 bytes, little-endian.
fn counter_bytes(n: i64) -> (u16, String) {
    (200, String::from_utf8(n.to_le_bytes().to_vec()).unwrap())
}

#[test]
fn spin_and_wharf_share_key_value_data_on_one_state_dir() {
    let Some(spin) = real_spin("3.6.3", TEST) else { return };
    let state = tempfile::tempdir().unwrap();
    let (_app, manifest, runtime_config) = app(state.path());

    // Spin writes.
    {
        let on_spin = spin_up(&spin, &manifest, &runtime_config, state.path());
        let url = |path: &str| on_spin.url(path);
        assert_eq!(call("PUT", &url("/kv/default/greeting"), Some(b"written by spin")), ok("stored"));
        assert_eq!(call("PUT", &url("/kv/shared/greeting"), Some(b"shared, by spin")), ok("stored"));
        assert_eq!(call("POST", &url("/kv-incr/default/visits/5"), None), ok("5"));
        assert_eq!(call("POST", &url("/kv-incr/default/visits/-2"), None), ok("3"));
        assert_eq!(call("POST", &url("/kv-incr/shared/visits/10"), None), ok("10"));
        assert_eq!(call("GET", &url("/kv/default/visits"), None), counter_bytes(3));
    }

    // wharf reads what Spin wrote, and writes.
    {
        let config = HostConfig::default()
            .arg("--state-dir")
            .arg(state.path().display().to_string())
            .arg("--runtime-config-file")
            .arg(runtime_config.display().to_string());
        let on_wharf = Host::start(&manifest, config);
        let url = |path: &str| on_wharf.url(path);
        assert_eq!(call("GET", &url("/kv/default/greeting"), None), ok("written by spin"), "{}", on_wharf.logs());
        assert_eq!(call("GET", &url("/kv/shared/greeting"), None), ok("shared, by spin"));
        assert_eq!(call("GET", &url("/kv/default/visits"), None), counter_bytes(3));
        assert_eq!(call("POST", &url("/kv-incr/default/visits/1"), None), ok("4"), "{}", on_wharf.logs());
        assert_eq!(call("POST", &url("/kv-incr/shared/visits/0"), None), ok("10"));
        assert_eq!(call("PUT", &url("/kv/default/from-wharf"), Some(b"written by wharf")), ok("stored"));
        assert_eq!(call("POST", &url("/kv-incr/default/wharf-counter/7"), None), ok("7"));
        assert_eq!(call("DELETE", &url("/kv/shared/greeting"), None), ok("deleted"));
        assert_eq!(call("GET", &url("/kv/default"), None), ok("from-wharf\ngreeting\nvisits\nwharf-counter"));
    }

    // Spin reads what wharf wrote.
    let on_spin = spin_up(&spin, &manifest, &runtime_config, state.path());
    let url = |path: &str| on_spin.url(path);
    assert_eq!(call("GET", &url("/kv/default/from-wharf"), None), ok("written by wharf"));
    assert_eq!(call("GET", &url("/kv/default/wharf-counter"), None), counter_bytes(7));
    assert_eq!(call("POST", &url("/kv-incr/default/wharf-counter/1"), None), ok("8"));
    assert_eq!(call("POST", &url("/kv-incr/default/visits/0"), None), ok("4"));
    assert_eq!(call("GET", &url("/kv/shared"), None), ok("visits"));
    assert_eq!(call("GET", &url("/kv/default"), None), ok("from-wharf\ngreeting\nvisits\nwharf-counter"));
}
