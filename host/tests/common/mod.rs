//! The probe app used by the host's integration tests.

#![allow(dead_code)]

pub use shop_tests::*;
pub use shop_tests::tempfile;
use std::path::PathBuf;

pub struct ProbeApp {
    pub dir: tempfile::TempDir,
    pub manifest: PathBuf,
    pub runtime_config: PathBuf,
}

/// An app with the probe and hello guests. `outbound` lists extra
/// `allowed_outbound_hosts` for the probe.
pub fn probe_app(outbound: &[&str]) -> ProbeApp {
    let probe = wasm("guest-probe");
    let hello = wasm("guest-hello");
    let mut hosts: Vec<String> = vec!["http://hello.spin.internal".into(), "http://self".into()];
    hosts.extend(outbound.iter().map(|s| s.to_string()));
    let hosts = hosts.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "probe-app"

[variables]
greeting = {{ default = "hello" }}
token = {{ required = true, secret = true }}

[[trigger.http]]
route = "/probe/..."
component = "probe"

[[trigger.http]]
route = "/items/:id/parts/..."
component = "probe"

[[trigger.http]]
route = "/things/:thing_id"
component = "probe"

[[trigger.http]]
route = "/hello"
component = "hello"

[[trigger.http]]
route = {{ private = true }}
component = "hidden"

[component.probe]
source = {probe:?}
key_value_stores = ["default", "other"]
allowed_outbound_hosts = [{hosts}]
environment = {{ FROM_MANIFEST = "yes" }}
[component.probe.variables]
message = "{{{{ greeting }}}}, world"
token = "{{{{ token }}}}"

[component.hello]
source = {hello:?}

[component.hidden]
source = {hello:?}
"#
    );
    let (dir, manifest) = manifest_dir(&text);
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        r#"
[key_value_store.other]
type = "spin"
path = "other.db"

[key_value_store.forbidden]
type = "spin"
"#,
    )
    .unwrap();
    ProbeApp { dir, manifest, runtime_config }
}

impl ProbeApp {
    /// The usual configuration: runtime config, state in the app dir, the required variable set.
    pub fn config(&self) -> HostConfig {
        HostConfig::default()
            .arg("--runtime-config-file")
            .arg(self.runtime_config.display().to_string())
            .arg("--state-dir")
            .arg(self.dir.path().join("state").display().to_string())
            .env("SPIN_VARIABLE_TOKEN", "from-env")
    }

    pub fn start(&self) -> Host {
        Host::start(&self.manifest, self.config())
    }
}

/// The WASIp2 probe guest alone on `/...`, granted `allowed` outbound
/// hosts, started with a state dir of its own.
pub fn start_probe_p2(allowed: &[String]) -> (tempfile::TempDir, Host) {
    start_guest("guest-probe-p2", allowed)
}

/// The WASIp3 probe (tests/guests/probe) alone on `/...`, allowed `allowed`.
pub fn start_probe(allowed: &[String]) -> (tempfile::TempDir, Host) {
    start_guest("guest-probe", allowed)
}

fn start_guest(guest: &str, allowed: &[String]) -> (tempfile::TempDir, Host) {
    let (dir, manifest) = manifest_dir(&format!(
        "spin_manifest_version = 2\n[application]\nname = \"probe\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"probe\"\n\
         [component.probe]\nsource = {:?}\nallowed_outbound_hosts = {:?}\n",
        wasm(guest),
        allowed
    ));
    let host = Host::start(&manifest, HostConfig::default().arg("--state-dir").arg(dir.path().display().to_string()));
    (dir, host)
}

/// Waits (10 s at most) until the host's `wharf_instances_created_total`,
/// read from its metrics listener, is `expected`. WASIp2 instances are made
/// ahead of their requests, in the background, so the count settles a little
/// after the last answer.
pub fn wait_for_instances(metrics_port: u16, expected: u64) {
    eventually(std::time::Duration::from_secs(10), &format!("{expected} instances made"), || {
        let text = get(&format!("http://127.0.0.1:{metrics_port}/metrics")).body;
        text.contains(&format!("\nwharf_instances_created_total {expected}\n")).then_some(())
    });
}
