//! Artifacts crafted as an attacker would push them, served by a real
//! registry (Debian's `docker-registry`): `wharf registry pull` refuses each
//! with an error that names the problem, writes nothing outside the
//! directories it owns, and keeps nothing of the artifact in its cache.

mod common;
use base64::Engine;
use common::*;
use std::path::Path;

const WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
const DATA_LAYER: &str = "application/vnd.wasm.content.layer.v1+data";
const APP_LAYER: &str = "application/vnd.fermyon.spin.application.v1+config";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// An artifact under construction: layers uploaded as they are added.
struct Artifact<'a> {
    registry: &'a OciRegistry,
    repository: &'a str,
    layers: Vec<Value>,
}

impl<'a> Artifact<'a> {
    fn new(registry: &'a OciRegistry, repository: &'a str) -> Self {
        Self { registry, repository, layers: Vec::new() }
    }

    /// Uploads `bytes` as a layer of `media_type`; returns its digest.
    fn layer(&mut self, media_type: &str, bytes: &[u8]) -> String {
        let digest = self.registry.upload_blob(self.repository, bytes);
        self.layers.push(json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() }));
        digest
    }

    /// Adds `locked` as the app layer, with a config labelled as Spin labels
    /// it, and tags the whole as `tag`.
    fn finish(mut self, locked: &Value, tag: &str) {
        let app_digest = self.layer(APP_LAYER, locked.to_string().as_bytes());
        let config = json!({ "architecture": "wasm", "os": "wasip1", "config": { "Labels": { "com.fermyon.spin.lockedAppDigest": app_digest } }, "rootfs": { "type": "layers", "diff_ids": [] } });
        let config = config.to_string().into_bytes();
        let config_digest = self.registry.upload_blob(self.repository, &config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": CONFIG, "digest": config_digest, "size": config.len() },
            "layers": self.layers,
        });
        self.registry.put_manifest(self.repository, tag, &manifest);
    }
}

/// A locked app of one HTTP component `id` whose source is `wasm` and whose
/// files are `files`.
fn locked_app(id: &str, wasm: &str, files: Value) -> Value {
    json!({
        "spin_lock_version": 0,
        "metadata": { "name": "hostile" },
        "triggers": [{ "id": "t", "trigger_type": "http", "trigger_config": { "component": id, "route": "/..." } }],
        "components": [{ "id": id, "source": { "content_type": "application/wasm", "digest": wasm }, "files": files }],
    })
}

fn inline(text: &str) -> Value {
    json!({ "inline": base64::engine::general_purpose::STANDARD_NO_PAD.encode(text), "digest": sha256_digest(text.as_bytes()) })
}

fn pull(reference: &str, cache: &Path, extra: &[&str]) -> (bool, String) {
    let cache = cache.display().to_string();
    let mut args = vec!["registry", "pull", reference, "--cache-dir", &cache];
    args.extend_from_slice(extra);
    wharf(&args, &[])
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

/// The pull is refused naming `expected`, and the cache holds nothing.
fn assert_refused(reference: &str, cache: &Path, extra: &[&str], expected: &str) {
    let (ok, out) = pull(reference, cache, extra);
    assert!(!ok, "{reference} was pulled: {out}");
    assert!(out.contains(expected), "expected `{expected}` for {reference} in: {out}");
    assert!(!out.contains("panicked"), "{out}");
    assert_eq!(files_under(cache), Vec::<String>::new(), "{reference}: the cache keeps nothing of a refused artifact");
}

#[test]
fn component_ids_and_file_paths_cannot_write_outside_the_hosts_directories() {
    let registry = OciRegistry::start();
    let outside = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let target = outside.path().join("planted");
    // The pulled files go to a temp dir under $TMPDIR: climb out of it.
    let climb = format!("../../../../../../../../..{}", target.display());
    let cases = [
        ("absolute-id", locked_id(target.to_str().unwrap()), "invalid component id"),
        ("dotdot-id", locked_id(&climb), "invalid component id"),
        ("dotdot-path", ("app".to_string(), json!([merge(inline("x"), json!({ "path": climb }))])), "contains `..`"),
        ("absolute-path", ("app".to_string(), json!([merge(inline("x"), json!({ "path": target.join("file") }))])), "is an absolute path"),
    ];
    for (repository, (id, files), expected) in cases {
        let mut artifact = Artifact::new(&registry, repository);
        let wasm = artifact.layer(WASM_LAYER, b"\0asm not really");
        artifact.finish(&locked_app(&id, &wasm, files), "v1");
        assert_refused(&registry.reference(&format!("{repository}:v1")), cache.path(), &[], expected);
        assert_eq!(files_under(outside.path()), Vec::<String>::new(), "{repository}: nothing written outside");
    }
}

/// A component id with a file under it, as the locked app names both.
fn locked_id(id: &str) -> (String, Value) {
    (id.to_string(), json!([merge(inline("x"), json!({ "path": "file" }))]))
}

fn merge(mut a: Value, b: Value) -> Value {
    a.as_object_mut().unwrap().extend(b.as_object().unwrap().clone());
    a
}

#[test]
fn each_cap_refuses_what_is_over_it_by_name_and_keeps_nothing() {
    let registry = OciRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let mut artifact = Artifact::new(&registry, "sized");
    let wasm = artifact.layer(WASM_LAYER, &[7u8; 4000]);
    let data = artifact.layer(DATA_LAYER, &[8u8; 3000]);
    let files = json!([{ "path": "big.bin", "digest": data }]);
    artifact.finish(&locked_app("app", &wasm, files), "v1");
    let reference = registry.reference("sized:v1");
    for (flag, value, expected) in [
        ("--max-layers", "2", "more than --max-layers allows (2)"),
        ("--max-config-bytes", "50", "more than --max-config-bytes allows (50)"),
        ("--max-locked-app-bytes", "100", "more than --max-locked-app-bytes allows (100)"),
        ("--max-blob-bytes", "3500", "is 4000 bytes, more than --max-blob-bytes allows (3500)"),
        ("--max-app-bytes", "6999", "add up to 7000 bytes, more than --max-app-bytes allows (6999)"),
    ] {
        assert_refused(&reference, cache.path(), &[flag, value], expected);
    }
    // At the caps exactly, it is pulled.
    let (ok, out) = pull(&reference, cache.path(), &["--max-layers", "3", "--max-blob-bytes", "4000", "--max-app-bytes", "7000"]);
    assert!(ok, "{out}");
    assert_eq!(files_under(&cache.path().join("registry/blobs/sha256")).len(), 2, "{out}");
}

#[test]
fn a_pull_that_fails_part_way_removes_the_blobs_it_had_fetched() {
    let registry = OciRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let mut artifact = Artifact::new(&registry, "tampered");
    let wasm = artifact.layer(WASM_LAYER, b"\0asm a component");
    // Layers are fetched a few at a time in order: with the damaged one
    // last, the good ones are in the cache before it fails.
    let mut files: Vec<Value> = (1..=5u8).map(|n| json!({ "path": format!("good-{n}.bin"), "digest": artifact.layer(DATA_LAYER, &[n; 2000]) })).collect();
    let damaged = artifact.layer(DATA_LAYER, &[9u8; 2000]);
    files.push(json!({ "path": "damaged.bin", "digest": damaged }));
    artifact.finish(&locked_app("app", &wasm, Value::Array(files)), "v1");
    // The registry's copy of one layer changes under it.
    std::fs::write(registry.blob_file(&damaged), [2u8; 2000]).unwrap();
    assert_refused(&registry.reference("tampered:v1"), cache.path(), &[], &damaged);
}

#[test]
fn a_locked_app_naming_content_that_is_not_a_layer_fetches_nothing() {
    let registry = OciRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let mut artifact = Artifact::new(&registry, "stray");
    let wasm = artifact.layer(WASM_LAYER, b"\0asm a component");
    let stray = sha256_digest(b"not in this image");
    artifact.finish(&locked_app("app", &wasm, json!([{ "path": "x", "digest": stray }])), "v1");
    assert_refused(&registry.reference("stray:v1"), cache.path(), &[], &format!("`{stray}` is not a layer"));
}
