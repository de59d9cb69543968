//! The shop as an OCI artifact in Spin's layout, against a real registry
//! (Debian's `docker-registry`) started per test: `wharf registry push`, the
//! layout it writes, `wharf up -f <reference>` started as SpinKube's operator
//! starts an executor, digest checks on what is pulled, and clear errors for
//! unknown tags, missing credentials and plain HTTP without `--insecure`.

mod common;
use base64::Engine;
use common::*;
use std::path::Path;

const WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
const APP_LAYER: &str = "application/vnd.fermyon.spin.application.v1+config";
const DATA_LAYER: &str = "application/vnd.wasm.content.layer.v1+data";

/// Pushes the shop (the build [`shop_manifest`] names) to `reference`;
/// returns the digest wharf printed.
fn push(reference: &str, env: &[(&str, &str)]) -> String {
    let manifest = shop_manifest().display().to_string();
    let (ok, out) = wharf(&["registry", "push", "-f", &manifest, reference], env);
    assert!(ok, "push failed: {out}");
    let digest = out.trim().rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_else(|| panic!("no digest in: {out}"));
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{out}");
    digest
}

/// `wharf registry pull` into `cache`.
fn pull(reference: &str, cache: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let cache = cache.display().to_string();
    wharf(&["registry", "pull", reference, "--cache-dir", &cache], env)
}

fn cached_blobs(cache: &Path) -> Vec<String> {
    let dir = cache.join("registry/blobs/sha256");
    let mut names: Vec<String> = std::fs::read_dir(&dir).map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect()).unwrap_or_default();
    names.sort();
    names
}

fn digest_hex(digest: &Value) -> String {
    digest.as_str().unwrap().strip_prefix("sha256:").unwrap().to_string()
}

#[test]
fn the_pushed_shop_has_spins_layout_and_runs_from_the_registry_as_an_executor_runs_it() {
    let registry = OciRegistry::start();
    let reference = registry.reference("shop:v1");
    let digest = push(&reference, &[]);
    assert_eq!(push(&reference, &[]), digest, "pushing the same app again gives the same digest");

    // Layout: one Wasm layer per distinct component, the locked app last, and
    // a config labelled with the locked app's digest.
    let image = registry.manifest("shop", "v1");
    assert_eq!(image["schemaVersion"], 2);
    assert_eq!(image["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
    assert_eq!(image["annotations"]["org.opencontainers.image.title"], "shop");
    let layers = image["layers"].as_array().unwrap();
    let (app_layer, wasm_layers) = layers.split_last().unwrap();
    assert_eq!(app_layer["mediaType"], APP_LAYER);
    assert!(wasm_layers.iter().all(|l| l["mediaType"] == WASM_LAYER), "{image}");
    let config: Value = serde_json::from_slice(&registry.blob("shop", image["config"]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(config["config"]["Labels"]["com.fermyon.spin.lockedAppDigest"], app_layer["digest"]);
    let locked: Value = serde_json::from_slice(&registry.blob("shop", app_layer["digest"].as_str().unwrap())).unwrap();
    let components = locked["components"].as_array().unwrap();
    assert_eq!(components.len(), 7);
    assert_eq!(wasm_layers.len(), 7, "seven different components, one layer each");
    let layer_of = |id: &str| {
        let component = components.iter().find(|c| c["id"] == id).unwrap();
        assert!(component.get("dependencies").is_none(), "{id} is pushed composed: {component}");
        assert_eq!(component["source"]["content_type"], "application/wasm");
        let digest = &component["source"]["digest"];
        assert!(wasm_layers.iter().any(|l| &l["digest"] == digest), "{id}'s source {digest} is a layer");
        registry.blob("shop", digest.as_str().unwrap())
    };
    // inventory has no dependencies: its layer is its file; order is composed
    // with inventory inside it, so its layer is larger than its own file.
    assert_eq!(layer_of("inventory"), std::fs::read(shop_component_file("inventory")).unwrap());
    let order_file = std::fs::read(shop_component_file("order")).unwrap();
    let order_layer = layer_of("order");
    assert!(order_layer.len() > order_file.len() && order_layer != order_file);
    assert_eq!(locked["variables"]["admin_token"], json!({ "secret": true }));
    let order = components.iter().find(|c| c["id"] == "order").unwrap();
    assert_eq!(order["metadata"]["allowed_outbound_hosts"], json!(["redis://{{ redis_host }}"]));

    // The executor: `up -f <reference> --runtime-config-file ...` with
    // SPIN_VARIABLE_*, an empty cache, no state dir; the whole saga works.
    let cache = tempfile::tempdir().unwrap();
    let options = Options { redis_kv: true, registry: Some((reference.clone(), cache.path().to_path_buf())), ..Options::default() };
    let (_redis, app) = App::start_with(options);
    assert!(app.host.logs().contains(&format!("pulled {reference}@{digest}")), "{}", app.host.logs());
    app.put_product("p1", 500, "EUR", 3);
    let order = app.place_simple("p1", 2, Some("tok_approve"));
    let paid = app.wait_status(order["id"].as_str().unwrap(), "paid");
    assert_eq!(paid["total_amount"], 1000);
    assert_eq!(app.stock("p1"), (1, 0));
    assert_eq!(app.get("/health").status, 200);
    let mut expected: Vec<String> = wasm_layers.iter().map(|l| digest_hex(&l["digest"])).collect();
    expected.sort();
    assert_eq!(cached_blobs(cache.path()), expected, "the cache holds exactly the Wasm layers");
}

/// `spec.components` of one of deploy/base's SpinApps.
fn spinapp_components(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join("deploy/base").join(file)).unwrap();
    let list = text.split("\n  components:\n").nth(1).unwrap_or_else(|| panic!("{file} has no spec.components"));
    list.lines()
        .take_while(|line| line.starts_with("    "))
        .filter_map(|line| line.trim().strip_prefix("- "))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_two_spinapps_of_deploy_base_run_the_saga_from_one_artifact() {
    let registry = OciRegistry::start();
    let reference = registry.reference("shop:v1");
    push(&reference, &[]);
    let http = spinapp_components("spinapp-shop.yaml");
    let workers = spinapp_components("spinapp-shop-worker.yaml");
    assert!(http.contains(&"order".to_string()) && workers.contains(&"payment-worker".to_string()), "{http:?} {workers:?}");

    let redis = Redis::start();
    let pod = |components: &[String], cache: &Path| Options {
        redis_kv: true,
        registry: Some((reference.clone(), cache.to_path_buf())),
        component_ids: components.to_vec(),
        ..Options::default()
    };
    let (http_cache, worker_cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let shop = App::on(&redis, pod(&http, http_cache.path()));
    let worker = App::on(&redis, pod(&workers, worker_cache.path()));
    wait_triggers(&redis, 1, 0);
    assert_eq!(shop.get("/health").status, 200);
    assert_eq!(worker.get("/orders").status, 404, "the worker pods serve no order routes");

    shop.put_product("p1", 250, "USD", 5);
    let paid = shop.place_simple("p1", 2, Some("tok_approve"));
    assert_eq!(shop.wait_status(paid["id"].as_str().unwrap(), "paid")["total_amount"], 500);
    let declined = shop.place_simple("p1", 1, Some("tok_decline"));
    shop.wait_status(declined["id"].as_str().unwrap(), "cancelled");
    shop.wait_stock("p1", (3, 0));
}

#[test]
fn files_go_inline_or_as_data_layers_and_are_mounted_when_run_from_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(4096);
    std::fs::create_dir_all(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("assets/small.txt"), "tiny").unwrap();
    std::fs::write(dir.path().join("assets/big.txt"), &big).unwrap();
    let manifest = dir.path().join("spin.toml");
    let text = format!(
        "spin_manifest_version = 2\n[application]\nname = \"files\"\n[[trigger.http]]\nroute = \"/probe/...\"\ncomponent = \"probe\"\n\
         [component.probe]\nsource = {:?}\nfiles = [{{ source = \"assets\", destination = \"/srv\" }}]\n",
        wasm("guest-probe")
    );
    std::fs::write(&manifest, text).unwrap();
    let registry = OciRegistry::start();
    let reference = registry.reference("files:v1");
    let manifest_arg = manifest.display().to_string();
    let (ok, out) = wharf(&["registry", "push", "-f", &manifest_arg, &reference], &[]);
    assert!(ok, "{out}");

    let image = registry.manifest("files", "v1");
    let data: Vec<&Value> = image["layers"].as_array().unwrap().iter().filter(|l| l["mediaType"] == DATA_LAYER).collect();
    assert_eq!(data.len(), 1, "only the big file is a layer: {image}");
    assert_eq!(registry.blob("files", data[0]["digest"].as_str().unwrap()), big.as_bytes());
    let locked: Value = serde_json::from_slice(&registry.blob("files", image["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap())).unwrap();
    let files = &locked["components"][0]["files"];
    assert_eq!(files[0]["path"], "srv/big.txt");
    assert_eq!((&files[0]["digest"], files[0].get("inline")), (&data[0]["digest"], None));
    assert_eq!((&files[1]["path"], &files[1]["inline"]), (&json!("srv/small.txt"), &json!("dGlueQ")), "base64 without padding, as Spin writes it");

    let cache = tempfile::tempdir().unwrap();
    let host = Host::start(Path::new(&reference), HostConfig::default().env("WHARF_CACHE_DIR", cache.path().display().to_string()));
    assert_eq!(get(&host.url("/probe/file/srv/small.txt")).json()["text"], "tiny");
    assert_eq!(get(&host.url("/probe/file/srv/big.txt")).json()["text"], big.as_str());
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let registry = OciRegistry::start();
    let reference = registry.reference("shop:v1");
    push(&reference, &[]);
    let image = registry.manifest("shop", "v1");
    let victim = image["layers"][0]["digest"].as_str().unwrap().to_string();
    let file = registry.blob_file(&victim);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();

    let cache = tempfile::tempdir().unwrap();
    let mut host = Host::spawn(Path::new(&reference), HostConfig::default().env("WHARF_CACHE_DIR", cache.path().display().to_string()));
    assert_eq!(host.wait_exit(std::time::Duration::from_secs(60)), Some(1), "the host must refuse to start:\n{}", host.logs());
    let logs = host.logs();
    assert!(logs.contains("does not match its digest") && logs.contains(&victim), "{logs}");
    let kept = cached_blobs(cache.path());
    assert!(!kept.iter().any(|name| victim.ends_with(name.as_str()) || name.contains("partial")), "nothing of it is kept: {kept:?}");
}

#[test]
fn a_damaged_cached_blob_is_fetched_again() {
    let registry = OciRegistry::start();
    let reference = registry.reference("shop:v1");
    push(&reference, &[]);
    let cache = tempfile::tempdir().unwrap();
    let (ok, out) = pull(&reference, cache.path(), &[]);
    assert!(ok, "{out}");
    let name = cached_blobs(cache.path())[0].clone();
    let path = cache.path().join("registry/blobs/sha256").join(&name);
    std::fs::write(&path, b"not the blob").unwrap();

    let (ok, out) = pull(&reference, cache.path(), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("does not match its digest; fetching it again"), "{out}");
    assert_eq!(std::fs::read(&path).unwrap(), registry.blob("shop", &format!("sha256:{name}")));
}

#[test]
fn an_unknown_tag_or_repository_is_a_clear_error() {
    let registry = OciRegistry::start();
    push(&registry.reference("shop:v1"), &[]);
    let cache = tempfile::tempdir().unwrap();
    for missing in [registry.reference("shop:v2"), registry.reference("nothing:v1")] {
        let (ok, out) = pull(&missing, cache.path(), &[]);
        assert!(!ok);
        assert!(out.contains(&format!("{missing}: not found in the registry")), "{out}");
    }
    let mut host = Host::spawn(Path::new(&registry.reference("shop:v2")), HostConfig::default());
    assert_eq!(host.wait_exit(std::time::Duration::from_secs(60)), Some(1));
    assert!(host.logs().contains("not found in the registry"), "{}", host.logs());
}

#[test]
fn credentials_come_from_the_docker_config() {
    let registry = OciRegistry::start_with("127.0.0.1", Some(("shop", "s3cret")));
    let reference = registry.reference("shop:v1");
    let docker = tempfile::tempdir().unwrap();
    let docker_config = docker.path().display().to_string();
    let env = [("DOCKER_CONFIG", docker_config.as_str())];
    let write_config = |password: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("shop:{password}"));
        let config = json!({ "auths": { registry.host.clone(): { "auth": auth } } });
        std::fs::write(docker.path().join("config.json"), config.to_string()).unwrap();
    };

    let (ok, out) = wharf(&["registry", "push", &reference], &env);
    assert!(!ok && out.contains("access denied") && out.contains("no credentials"), "{out}");
    write_config("wrong");
    let (ok, out) = wharf(&["registry", "push", &reference], &env);
    assert!(!ok && out.contains("access denied") && out.contains("were refused"), "{out}");

    write_config("s3cret");
    push(&reference, &env);
    let cache = tempfile::tempdir().unwrap();
    let (ok, out) = pull(&reference, cache.path(), &env);
    assert!(ok, "{out}");
    assert_eq!(cached_blobs(cache.path()).len(), 7);
}

#[test]
fn plain_http_off_loopback_needs_insecure() {
    let registry = OciRegistry::start_with(&non_loopback_ip(), None);
    let reference = registry.reference("shop:v1");
    let (ok, out) = wharf(&["registry", "push", &reference], &[]);
    assert!(!ok && out.contains("cannot reach the registry over HTTPS") && out.contains("--insecure (-k)"), "{out}");
    let (ok, out) = wharf(&["registry", "push", "-k", &reference], &[]);
    assert!(ok, "{out}");
    let cache = tempfile::tempdir().unwrap();
    let (ok, out) = pull(&reference, cache.path(), &[]);
    assert!(!ok && out.contains("--insecure"), "{out}");
    let cache_dir = cache.path().display().to_string();
    let (ok, out) = wharf(&["registry", "pull", "--insecure", &reference, "--cache-dir", &cache_dir], &[]);
    assert!(ok, "{out}");
}

/// What SpinKube nodes run today: the WASIp2 build pushed by real Spin 3.6.3
/// (`spin registry push`, its own layout and composition), started by
/// wharf from the reference as an executor starts it; the saga works.
#[test]
fn the_wasip2_build_pushed_by_real_spin_3_6_3_runs_on_wharf_from_the_registry() {
    let test = "the_wasip2_build_pushed_by_real_spin_3_6_3_runs_on_wharf_from_the_registry";
    let Some(spin) = real_spin("3.6.3", test) else { return };
    let registry = OciRegistry::start();
    let reference = registry.reference("shop:0.1.0-wasip2");
    let pushed = std::process::Command::new(&spin)
        .current_dir(workspace_root())
        .args(["registry", "push", "-f", "spin.p2.toml", "--insecure", &reference])
        .output()
        .unwrap();
    assert!(pushed.status.success(), "spin registry push: {}{}", String::from_utf8_lossy(&pushed.stdout), String::from_utf8_lossy(&pushed.stderr));
    let image = registry.manifest("shop", "0.1.0-wasip2");
    assert_eq!(image["layers"].as_array().unwrap().last().unwrap()["mediaType"], APP_LAYER, "{image}");

    let cache = tempfile::tempdir().unwrap();
    let options = Options { redis_kv: true, registry: Some((reference.clone(), cache.path().to_path_buf())), ..Options::default() };
    let (_redis, app) = App::start_with(options);
    assert!(app.host.logs().contains(&format!("pulled {reference}@")), "{}", app.host.logs());
    app.put_product("p1", 500, "EUR", 3);
    let order = app.place_simple("p1", 2, Some("tok_approve"));
    let paid = app.wait_status(order["id"].as_str().unwrap(), "paid");
    assert_eq!(paid["total_amount"], 1000);
    assert_eq!(app.stock("p1"), (1, 0));
}
