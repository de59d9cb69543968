//! Variables: templates, providers, required variables.

mod common;
use common::*;

#[test]
fn component_variables_render_from_defaults_and_env() {
    let app = probe_app(&[]);
    let host = app.start();
    assert_eq!(get(&host.url("/probe/var/message")).json()["value"], "hello, world");
    assert_eq!(get(&host.url("/probe/var/token")).json()["value"], "from-env");
    let r = get(&host.url("/probe/var/undeclared"));
    assert_eq!(r.status, 404);
    assert!(r.body.contains("Undefined"), "{}", r.body);
}

#[test]
fn runtime_config_provider_and_env_override_default() {
    let app = probe_app(&[]);
    let mut config = std::fs::read_to_string(&app.runtime_config).unwrap();
    config.push_str("\n[[variables_provider]]\ntype = \"static\"\nvalues = { greeting = \"bonjour\", token = \"from-config\" }\n");
    std::fs::write(&app.runtime_config, config).unwrap();
    let host = Host::start(&app.manifest, app.config().env("SPIN_VARIABLE_GREETING", "hola"));
    // Runtime-config providers come before the SPIN_VARIABLE_ environment, as in Spin.
    assert_eq!(get(&host.url("/probe/var/message")).json()["value"], "bonjour, world");
    assert_eq!(get(&host.url("/probe/var/token")).json()["value"], "from-config");
}

#[test]
fn a_missing_required_variable_stops_the_start() {
    let app = probe_app(&[]);
    let config = HostConfig::default().arg("--runtime-config-file").arg(app.runtime_config.display().to_string());
    let mut host = Host::spawn(&app.manifest, config);
    assert_eq!(host.wait_exit(std::time::Duration::from_secs(60)), Some(1));
    let logs = host.logs();
    assert!(logs.contains("required variable without a value: token") && logs.contains("SPIN_VARIABLE_TOKEN"), "{logs}");
}
