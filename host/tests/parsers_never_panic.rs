//! Property tests of the two parsers that read what others wrote: the locked
//! app (from a registry) and `spin.toml`. Whatever the input, they answer
//! with a value or an error, never a panic; a locked app is also read without
//! touching the disk. Inputs are valid documents with one node replaced by
//! something hostile, and raw bytes. The case counts bound the run to a few
//! seconds; `PROPTEST_CASES` raises them for a longer search.

use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use wharf::manifest::Manifest;
use wharf::oci::locked::LockedApp;

fn locked_app() -> Value {
    json!({
        "spin_lock_version": 1,
        "must_understand": ["component_host_requirements"],
        "metadata": { "name": "shop", "version": "1.0.0", "authors": ["a"], "triggers": { "http": { "base": "/" }, "redis": { "address": "{{ redis_url }}" } } },
        "variables": { "redis_url": { "default": "redis://127.0.0.1" }, "token": { "secret": true } },
        "triggers": [
            { "id": "h", "trigger_type": "http", "trigger_config": { "component": "order", "route": "/orders/..." } },
            { "id": "p", "trigger_type": "http", "trigger_config": { "component": "order", "route": { "private": true } } },
            { "id": "r", "trigger_type": "redis", "trigger_config": { "component": "worker", "channel": "orders.created" } }
        ],
        "components": [
            {
                "id": "order",
                "metadata": { "allowed_outbound_hosts": ["http://x.spin.internal"], "key_value_stores": ["default"] },
                "source": { "content_type": "application/wasm", "digest": format!("sha256:{}", "a".repeat(64)) },
                "env": { "A": "b" },
                "files": [{ "path": "static/a.txt", "inline": "dGlueQ", "digest": "sha256:8950abfda7b727630760dd35bcf5c3daa7631aff223a90f7728c0d2521dde10c" }],
                "config": { "token": "{{ token }}" },
                "dependencies": { "shop:inventory/inventory": { "source": { "content_type": "application/wasm", "digest": format!("sha256:{}", "b".repeat(64)) }, "export": null, "inherit": "All" } },
                "host_requirements": { "local_service_chaining": "required" }
            },
            { "id": "worker", "source": { "content_type": "application/wasm", "digest": format!("sha256:{}", "c".repeat(64)) } }
        ]
    })
}

const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "shop"
[application.trigger.redis]
address = "{{ redis_url }}"
[variables]
redis_url = { default = "redis://127.0.0.1" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/orders/:id/..."
component = "order"
[[trigger.redis]]
channel = "orders.created"
component = "worker"
[component.order]
source = "order.wasm"
files = ["static/**/*", { source = "config", destination = "/etc/app" }]
key_value_stores = ["default"]
allowed_outbound_hosts = ["http://gateway.spin.internal", "{{ redis_url }}"]
[component.order.variables]
token = "{{ token }}"
[component.order.build]
command = "cargo build"
workdir = "order"
[component.order.dependencies]
"shop:inventory/inventory" = { path = "inventory.wasm" }
[component.worker]
source = "worker.wasm"
"#;

/// Strings an attacker would try in names and paths.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just("/etc/passwd".to_string()),
        Just("../../../../tmp/x".to_string()),
        Just("{{ nope }}".to_string()),
        Just(String::new()),
        Just("sha256:../../x".to_string()),
        "[a-zA-Z0-9./\\\\:@{}%*?\\[\\] \\x00-\\x1f\u{80}-\u{10ffff}-]{0,24}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        hostile_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(hostile_string(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every node of `value`, as JSON pointers.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| pointers(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out)),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

fn read_locked(value: Value) {
    let Ok(locked) = serde_json::from_value::<LockedApp>(value) else { return };
    // Nothing may be written while reading: the files directory does not exist.
    let nowhere = Path::new("/nonexistent/wharf-fuzz");
    let _ = locked.into_manifest(|digest| Ok(PathBuf::from(digest)), nowhere);
    assert!(!nowhere.exists());
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_locked_app_with_any_node_replaced_reads_without_panic(pick in any::<prop::sample::Index>(), replacement in json_value()) {
        let mut app = locked_app();
        let mut nodes = Vec::new();
        pointers(&app, String::new(), &mut nodes);
        let pointer = pick.get(&nodes).clone();
        match app.pointer_mut(&pointer) {
            Some(node) => *node = replacement,
            None => app = replacement,
        }
        read_locked(app);
    }

    #[test]
    fn any_bytes_as_a_locked_app_read_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            read_locked(value);
        }
    }

    #[test]
    fn a_manifest_with_any_value_replaced_parses_without_panic(pick in any::<prop::sample::Index>(), replacement in hostile_string()) {
        // Replace one quoted string of the manifest (a name, a path, a
        // route, a template) with a hostile one, escaped as TOML needs.
        let quoted: Vec<(usize, usize)> = quoted_strings(MANIFEST);
        let (start, end) = *pick.get(&quoted);
        let text = format!("{}{}{}", &MANIFEST[..start], toml_string(&replacement), &MANIFEST[end..]);
        let _ = Manifest::parse(&text);
    }

    #[test]
    fn any_text_as_a_manifest_parses_without_panic(text in "[\\[\\]a-z_.=\"{}, \n0-9/:@-]{0,400}") {
        let _ = Manifest::parse(&text);
    }
}

/// The byte ranges of `"..."` strings in `text`, quotes included.
fn quoted_strings(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c == '"' {
            match start.take() {
                Some(s) => out.push((s, i + 1)),
                None => start = Some(i),
            }
        }
    }
    out
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[test]
fn the_seed_documents_are_valid() {
    // Otherwise every mutation is refused at the first field and the
    // properties above search nothing.
    let locked: LockedApp = serde_json::from_value(locked_app()).unwrap();
    locked.into_manifest(|digest| Ok(PathBuf::from(digest)), Path::new("/nonexistent")).expect("the seed locked app reads");
    Manifest::parse(MANIFEST).expect("the seed manifest parses");
}
