//! `static_response` routes (Spin 3.x and later): the host answers them
//! itself, with the status, headers and body the manifest gives, beside the
//! routes of components. Real Spin 3.6.3 gives the same answers.

mod common;
use common::*;
use std::process::Command;

fn app() -> (tempfile::TempDir, std::path::PathBuf) {
    manifest_dir(&format!(
        r#"spin_manifest_version = 2
[application]
name = "static-routes"
[[trigger.http]]
route = "/hello/..."
component = "hello"
[component.hello]
source = {:?}
[[trigger.http]]
route = "/..."
static_response = {{ status_code = 404, body = "not found" }}
[[trigger.http]]
route = "/default-code"
static_response = {{ body = "should be 200" }}
[[trigger.http]]
route = "/bob"
static_response = {{ status_code = 302, headers = {{ location = "/hello/bob" }} }}
[[trigger.http]]
route = "/typed"
static_response = {{ status_code = 201, headers = {{ content-type = "application/json", x-static = "yes" }}, body = '{{"ok":true}}' }}
"#,
        wasm("guest-hello-p2")
    ))
}

/// Every answer as `METHOD path -> status [content-type] [x-static] body`,
/// the server's port made the same for every run. A client that follows
/// redirects asks `/bob`, so its answer is the one at the `location`.
fn answers(base: impl Fn(&str) -> String, port: u16) -> Vec<String> {
    let requests: [(&str, &str, Option<&[u8]>); 7] = [
        ("GET", "/hello/there", None),
        ("GET", "/default-code", None),
        ("POST", "/default-code", Some(b"a body a static response never reads")),
        ("GET", "/no/such/page", None),
        ("GET", "/typed", None),
        ("HEAD", "/typed", None),
        ("GET", "/bob", None),
    ];
    requests
        .iter()
        .map(|(method, path, body)| {
            let reply = request(method, &base(path), &[], *body);
            let header = |name| reply.header(name).unwrap_or("-").to_string();
            format!("{method} {path} -> {} [{}] [{}] {}", reply.status, header("content-type"), header("x-static"), reply.body)
                .replace(&port.to_string(), "<port>")
        })
        .collect()
}

#[test]
fn static_routes_answer_beside_a_component() {
    let (_dir, manifest) = app();
    let host = Host::start(&manifest, HostConfig::default());
    let got = answers(|path| host.url(path), host.addr().port());
    assert_eq!(
        got,
        [
            "GET /hello/there -> 200 [text/plain] [-] Hello from WASIp2! GET /hello/there http://127.0.0.1:<port>/hello/there",
            "GET /default-code -> 200 [-] [-] should be 200",
            "POST /default-code -> 200 [-] [-] should be 200",
            "GET /no/such/page -> 404 [-] [-] not found",
            r#"GET /typed -> 201 [application/json] [yes] {"ok":true}"#,
            "HEAD /typed -> 201 [application/json] [yes] ",
            "GET /bob -> 200 [text/plain] [-] Hello from WASIp2! GET /hello/bob http://127.0.0.1:<port>/hello/bob",
        ],
        "{got:#?}"
    );
    // The redirect itself, which the client above followed.
    let reply = raw_http(host.addr(), b"GET /bob HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 302 "), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("\r\nlocation: /hello/bob\r\n"), "{reply}");
    // HEAD gets the length GET's body has, and no body.
    let reply = raw_http(host.addr(), b"HEAD /typed HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(reply.to_ascii_lowercase().contains("\r\ncontent-length: 11\r\n") && reply.ends_with("\r\n\r\n"), "{reply}");
}

#[test]
fn a_static_response_that_would_make_a_broken_answer_is_refused_at_load() {
    let cases = [
        ("{ status_code = 1000 }", "is not an HTTP status"),
        (r#"{ headers = { "bad name" = "x" } }"#, "is not a header name"),
        (r#"{ headers = { x-a = "line\nbreak" } }"#, "not a valid header value"),
        (r#"{ headers = { transfer-encoding = "chunked" } }"#, "frames the body itself"),
        (r#"{ headers = { content-length = "99" }, body = "short" }"#, "is not the body's length (5)"),
        (r#"{ status = 200 }"#, "unknown field `status`"),
    ];
    for (response, expected) in cases {
        let (_dir, manifest) = manifest_dir(&format!(
            "spin_manifest_version = 2\n[application]\nname = \"bad\"\n[[trigger.http]]\nroute = \"/...\"\nstatic_response = {response}\n"
        ));
        let output = Command::new(wharf_binary()).arg("up").arg("-f").arg(&manifest).args(["--listen", "127.0.0.1:0"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        // A field serde refuses is named with its line; the rest with its table.
        let located = stderr.contains("trigger.http[0]") || stderr.contains(&format!("static_response = {response}"));
        assert!(!output.status.success() && located && stderr.contains(expected), "{response}: {stderr}");
    }
}

#[test]
fn static_routes_answer_on_wharf_as_on_spin_3_6_3() {
    let Some(spin) = real_spin("3.6.3", "static_routes_answer_on_wharf_as_on_spin_3_6_3") else { return };
    let (dir, manifest) = app();
    let on_wharf = {
        let host = Host::start(&manifest, HostConfig::default().arg("--state-dir").arg(dir.path().join("wharf").display().to_string()));
        answers(|path| host.url(path), host.addr().port())
    };
    let on_spin = {
        let spin = SpinUp::up(&spin, &manifest, &dir.path().join("spin"), "spin up (3.6.3)");
        answers(|path| spin.url(path), spin.port)
    };
    assert_eq!(on_wharf, on_spin);
    // Not vacuous: the static answers and the component's are both there.
    assert!(on_wharf[3].ends_with("404 [-] [-] not found") && on_wharf[0].contains("Hello from WASIp2!"), "{on_wharf:#?}");
}
