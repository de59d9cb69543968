//! Spin 2.x apps: `guest-hello-2023-10-18` is built with spin-sdk 2.2 for
//! wasm32-wasip1, so wharf componentizes it at load, and it exports
//! `wasi:http/incoming-handler@0.2.0-rc-2023-10-18` and imports that release
//! candidate's `wasi:http` and `wasi:io`. It is served like any WASIp2
//! handler, and its outbound requests meet the same allow-list. The same
//! requests get the same answers from real Spin 3.6.3 (the Spin of
//! SpinKube's shim).

mod common;
use common::*;

fn app(allowed: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    manifest_dir(&format!(
        "spin_manifest_version = 2\n[application]\nname = \"spin2\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"spin2\"\n\
         [component.spin2]\nsource = {:?}\nallowed_outbound_hosts = [{allowed:?}]\n",
        wasm_p1("guest-hello-2023-10-18")
    ))
}

/// Every answer as `status [x-answered-by] body`, the ports of the two
/// upstreams and the server made the same for every run.
fn answers(base: impl Fn(&str) -> String, server_port: u16, allowed: u16, denied: u16) -> Vec<String> {
    let fetch = |port: u16| format!("http://127.0.0.1:{port}/from-guest");
    let requests: [(&str, &str, Vec<(&str, &str)>, String); 4] = [
        ("POST", "/echo?a=1", vec![("x-probe", "yes")], "hi there".into()),
        ("GET", "/echo", vec![], String::new()),
        ("POST", "/fetch", vec![], fetch(allowed)),
        ("POST", "/fetch", vec![], fetch(denied)),
    ];
    requests
        .iter()
        .map(|(method, path, headers, body)| {
            let reply = request(method, &base(path), headers, (!body.is_empty()).then_some(body.as_bytes()));
            let line = format!("{method} {path} -> {} [{}] {}", reply.status, reply.header("x-answered-by").unwrap_or("-"), reply.body);
            [(server_port, "<server>"), (allowed, "<allowed>"), (denied, "<denied>")]
                .iter()
                .fold(line, |line, (port, name)| line.replace(&port.to_string(), name))
        })
        .collect()
}

#[test]
fn a_spin_2_app_is_served_over_the_2023_10_18_release_candidate() {
    let (allowed, allowed_seen) = http_upstream();
    let (denied, denied_seen) = http_upstream();
    let (_dir, manifest) = app(&format!("http://127.0.0.1:{allowed}"));
    let host = Host::start(&manifest, HostConfig::default());
    let got = answers(|path| host.url(path), host.addr().port(), allowed, denied);
    assert_eq!(
        got[..3],
        [
            "POST /echo?a=1 -> 200 [spin-sdk-2] Method::Post http://127.0.0.1:<server>/echo?a=1 x-probe=yes body=hi there",
            "GET /echo -> 200 [spin-sdk-2] Method::Get http://127.0.0.1:<server>/echo x-probe=- body=",
            "POST /fetch -> 200 [-] 200 upstream",
        ],
        "{got:#?}"
    );
    assert!(got[3].starts_with("POST /fetch -> 502") && got[3].contains("HttpRequestDenied"), "{got:#?}");
    let seen = allowed_seen.lock().unwrap();
    assert!(seen.len() == 1 && seen[0].starts_with("GET /from-guest") && seen[0].contains("x-from: rc-guest"), "{seen:?}");
    assert!(denied_seen.lock().unwrap().is_empty(), "a denied request must not leave the host");
}

#[test]
fn a_spin_2_app_answers_on_wharf_as_on_spin_3_6_3() {
    let Some(spin) = real_spin("3.6.3", "a_spin_2_app_answers_on_wharf_as_on_spin_3_6_3") else { return };
    let (allowed, _) = http_upstream();
    let (denied, _) = http_upstream();
    let (dir, manifest) = app(&format!("http://127.0.0.1:{allowed}"));
    let on_wharf = {
        let host = Host::start(&manifest, HostConfig::default().arg("--state-dir").arg(dir.path().join("wharf").display().to_string()));
        answers(|path| host.url(path), host.addr().port(), allowed, denied)
    };
    let on_spin = {
        let spin = SpinUp::up(&spin, &manifest, &dir.path().join("spin"), "spin up (3.6.3)");
        answers(|path| spin.url(path), spin.port, allowed, denied)
    };
    assert_eq!(on_wharf, on_spin);
    // Not vacuous: the guest answered, and its outbound request went through.
    assert!(on_wharf[0].contains("-> 200 [spin-sdk-2]") && on_wharf[2].ends_with("200 upstream"), "{on_wharf:#?}");
}
