//! Bad manifests and configs stop the start with the file, field and problem.

mod common;
use common::*;
use std::time::Duration;

fn start_fails(manifest_text: &str, extra: HostConfig) -> String {
    let (_dir, manifest) = manifest_dir(manifest_text);
    let mut host = Host::spawn(&manifest, extra);
    assert_eq!(host.wait_exit(Duration::from_secs(60)), Some(1), "{}", host.logs());
    host.logs()
}

fn hello_manifest(extra_component_lines: &str, route: &str) -> String {
    format!(
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = {route:?}\ncomponent = \"hello\"\n[component.hello]\nsource = {:?}\n{extra_component_lines}\n",
        wasm("guest-hello")
    )
}

#[test]
fn unknown_field_names_file_and_field() {
    let logs = start_fails(&hello_manifest("allowed_outbound_host = []", "/"), HostConfig::default());
    assert!(logs.contains("spin.toml") && logs.contains("unknown field `allowed_outbound_host`"), "{logs}");
}

#[test]
fn missing_source_file() {
    let text = hello_manifest("", "/").replace("guest_hello.wasm", "nope.wasm");
    let logs = start_fails(&text, HostConfig::default());
    assert!(logs.contains("component.hello") && logs.contains("nope.wasm"), "{logs}");
}

#[test]
fn bad_route_and_duplicate_route() {
    let logs = start_fails(&hello_manifest("", "no-slash"), HostConfig::default());
    assert!(logs.contains("trigger.http[0].route") && logs.contains("must start with `/`"), "{logs}");
    let dup = hello_manifest("", "/a/:x") + "[[trigger.http]]\nroute = \"/a/:y\"\ncomponent = \"hello\"\n";
    let logs = start_fails(&dup, HostConfig::default());
    assert!(logs.contains("duplicate route"), "{logs}");
}

#[test]
fn bad_template() {
    let logs = start_fails(&hello_manifest("[component.hello.variables]\nv = \"{{ nope }}\"", "/"), HostConfig::default());
    assert!(logs.contains("component.hello") && logs.contains("undeclared variable `nope`"), "{logs}");
    let logs = start_fails(&hello_manifest("[component.hello.variables]\nv = \"{{ open\"", "/"), HostConfig::default());
    assert!(logs.contains("unterminated"), "{logs}");
}

#[test]
fn bad_runtime_config() {
    let (dir, _) = manifest_dir("");
    let config = dir.path().join("rc.toml");
    std::fs::write(&config, "[key_value_store.default]\ntype = \"spin\"\npaht = \"x.db\"\n").unwrap();
    let logs = start_fails(&hello_manifest("", "/"), HostConfig::default().arg("--runtime-config-file").arg(config.display().to_string()));
    assert!(logs.contains("rc.toml") && logs.contains("paht"), "{logs}");
}

#[test]
fn no_store_file_is_made_for_an_app_that_uses_none() {
    let (dir, manifest) = manifest_dir(&hello_manifest("", "/"));
    let host = Host::start(&manifest, HostConfig::default());
    assert_eq!(get(&host.url("/")).status, 200);
    assert!(!dir.path().join(".spin").exists(), "no state directory for an app without key-value stores");
    drop(host);
    let (dir, manifest) = manifest_dir(&hello_manifest("key_value_stores = [\"default\"]", "/"));
    let host = Host::start(&manifest, HostConfig::default());
    assert!(dir.path().join(".spin/sqlite_key_value.db").exists(), "the default store in .spin next to spin.toml");
    drop(host);
}

#[test]
fn second_start_uses_the_compiled_code_cache() {
    let (_dir, manifest) = manifest_dir(&hello_manifest("", "/"));
    let cache = tempfile::tempdir().unwrap();
    let config = HostConfig::default().env("WHARF_CACHE_DIR", cache.path().display().to_string());
    drop(Host::start(&manifest, config.clone()));
    let entries = std::fs::read_dir(cache.path()).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "cwasm")).count();
    assert_eq!(entries, 1, "the compiled component is cached on disk");
    let host = Host::start(&manifest, config);
    assert_eq!(get(&host.url("/")).body, "Hello, world!");
}

#[test]
fn build_runs_each_components_commands_and_stops_at_a_failure() {
    let text = hello_manifest("[component.hello.build]\ncommand = [\"echo one > built.txt\", \"echo two >> built.txt\"]\nworkdir = \"sub\"", "/");
    let (dir, manifest) = manifest_dir(&text);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let status = std::process::Command::new(wharf_binary()).arg("build").arg("-f").arg(&manifest).status().unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(dir.path().join("sub/built.txt")).unwrap(), "one\ntwo\n");

    let failing = hello_manifest("[component.hello.build]\ncommand = \"exit 3\"", "/");
    let (_dir, manifest) = manifest_dir(&failing);
    let out = std::process::Command::new(wharf_binary()).arg("build").arg("-f").arg(&manifest).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hello: `exit 3` failed"), "{stderr}");
}
