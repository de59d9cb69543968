//! Spin's locked app: the JSON document an app is pushed as.
//!
//! Spin resolves `spin.toml` into this form before running or pushing an app;
//! in a registry it is the last layer of the artifact, and every component's
//! source is a content digest naming another layer. Our types cover the fields
//! Spin writes; reading refuses what this host could not honour (unknown
//! `must_understand` entries, host requirements, trigger types, trigger
//! fields) with the field named, as manifest loading does.

use crate::manifest::{
    Application, ApplicationHttp, ApplicationRedis, ApplicationTriggers, Component, ComponentSource, Dependency, HttpRoute,
    HttpTrigger, Manifest, RedisTrigger, StaticResponse, Triggers, VariableDecl,
};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The host requirement Spin records for a component that calls others through
/// `*.spin.internal`; the only one Spin defines, and one this host provides.
const SERVICE_CHAINING: &str = "local_service_chaining";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedApp {
    /// 0, or 1 when `must_understand` is set (as Spin writes it).
    pub spin_lock_version: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_understand: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub host_requirements: Map<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, LockedVariable>,
    pub triggers: Vec<LockedTrigger>,
    pub components: Vec<LockedComponent>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedVariable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// No default means the variable is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedTrigger {
    pub id: String,
    pub trigger_type: String,
    pub trigger_config: Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedComponent {
    pub id: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    pub source: LockedSource,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<LockedFile>,
    /// The component's variables (`[component.x.variables]`), templates unresolved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, LockedDependency>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub host_requirements: Map<String, Value>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedSource {
    pub content_type: String,
    #[serde(flatten)]
    pub content: ContentRef,
}

/// Where content is: a URL, inline bytes (base64) or a digest naming a layer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ContentRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// One file of a component's `files`, at `path` (relative, `/`-separated)
/// under the component's root.
#[derive(Debug, Serialize, Deserialize)]
pub struct LockedFile {
    #[serde(flatten)]
    pub content: ContentRef,
    pub path: String,
}

/// A dependency an app was pushed with uncomposed (Spin's `--compose=false`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedDependency {
    pub source: LockedSource,
    pub export: Option<String>,
    /// `"All"`, or `{"Some": [..]}`; absent means none is inherited.
    #[serde(default)]
    pub inherit: Option<Value>,
}

/// The locked app for a manifest whose components were composed with their
/// dependencies: `digests` maps each component id to its wasm layer's
/// digest, `files` to its files.
pub fn lock(manifest: &Manifest, digests: &BTreeMap<String, String>, mut files: BTreeMap<String, Vec<LockedFile>>) -> Result<LockedApp> {
    let application = &manifest.application;
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(application.name));
    if let Some(version) = &application.version {
        metadata.insert("version".into(), json!(version));
    }
    if let Some(description) = &application.description {
        metadata.insert("description".into(), json!(description));
    }
    if !application.authors.is_empty() {
        metadata.insert("authors".into(), json!(application.authors));
    }
    let mut trigger_globals = Map::new();
    if let Some(http) = &application.trigger.http {
        let base = http.base.as_ref().map(|base| ("base".to_string(), json!(base)));
        trigger_globals.insert("http".into(), Value::Object(base.into_iter().collect()));
    }
    if let Some(redis) = &application.trigger.redis {
        trigger_globals.insert("redis".into(), json!({ "address": redis.address }));
    }
    metadata.insert("triggers".into(), Value::Object(trigger_globals));

    let variables = manifest
        .variables
        .iter()
        .map(|(name, decl)| {
            (name.clone(), LockedVariable { description: decl.description.clone(), default: decl.default.clone(), secret: decl.secret })
        })
        .collect();

    let mut triggers = Vec::new();
    let mut ids = IdAllocator::default();
    for t in &manifest.trigger.http {
        let route = match &t.route {
            HttpRoute::Route(route) => json!(route),
            HttpRoute::Private(private) => json!({ "private": private.private }),
        };
        let mut config = json!({ "route": route });
        if let Some(component) = &t.component {
            config["component"] = json!(component);
        }
        if let Some(response) = &t.static_response {
            config["static_response"] = serde_json::to_value(response)?;
        }
        if let Some(executor) = &t.executor {
            config["executor"] = serde_json::to_value(executor)?;
        }
        let id = ids.take(t.id.as_deref(), "http", t.component.as_deref().unwrap_or("static"));
        triggers.push(LockedTrigger { id, trigger_type: "http".into(), trigger_config: config });
    }
    for t in &manifest.trigger.redis {
        let mut config = json!({ "component": t.component, "channel": t.channel });
        if let Some(address) = &t.address {
            config["address"] = json!(address);
        }
        triggers.push(LockedTrigger { id: ids.take(t.id.as_deref(), "redis", &t.component), trigger_type: "redis".into(), trigger_config: config });
    }

    let mut components = Vec::new();
    for (id, spec) in &manifest.component {
        let digest = digests.get(id).with_context(|| format!("component.{id}: no layer"))?;
        let mut metadata = Map::new();
        if let Some(description) = &spec.description {
            metadata.insert("description".into(), json!(description));
        }
        metadata.insert("allowed_outbound_hosts".into(), json!(spec.allowed_outbound_hosts));
        metadata.insert("key_value_stores".into(), json!(spec.key_value_stores));
        metadata.insert("databases".into(), json!(spec.sqlite_databases));
        metadata.insert("ai_models".into(), json!(spec.ai_models));
        let mut host_requirements = Map::new();
        if spec.allowed_outbound_hosts.iter().any(|h| !h.contains("{{") && h.contains(".spin.internal")) {
            host_requirements.insert(SERVICE_CHAINING.into(), json!("required"));
        }
        components.push(LockedComponent {
            id: id.clone(),
            metadata,
            source: LockedSource {
                content_type: "application/wasm".into(),
                content: ContentRef { digest: Some(digest.clone()), ..Default::default() },
            },
            env: spec.environment.clone(),
            files: files.remove(id).unwrap_or_default(),
            config: spec.variables.clone(),
            dependencies: BTreeMap::new(),
            host_requirements,
        });
    }
    let must_understand: Vec<String> =
        if components.iter().any(|c| !c.host_requirements.is_empty()) { vec!["component_host_requirements".into()] } else { Vec::new() };
    Ok(LockedApp {
        spin_lock_version: if must_understand.is_empty() { 0 } else { 1 },
        must_understand,
        metadata,
        host_requirements: Map::new(),
        variables,
        triggers,
        components,
    })
}

/// Trigger ids: the manifest's where given, otherwise `<type>-<component>`
/// (numbered when a component has several triggers of one type).
#[derive(Default)]
struct IdAllocator(std::collections::HashSet<String>);

impl IdAllocator {
    fn take(&mut self, given: Option<&str>, trigger_type: &str, component: &str) -> String {
        let id = match given {
            Some(id) => id.to_string(),
            None => {
                let base = format!("{trigger_type}-{component}");
                (0..).map(|n| if n == 0 { base.clone() } else { format!("{base}-{n}") }).find(|id| !self.0.contains(id)).expect("unbounded")
            }
        };
        self.0.insert(id.clone());
        id
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpTriggerConfig {
    component: Option<String>,
    static_response: Option<StaticResponse>,
    route: HttpRouteConfig,
    #[serde(default)]
    executor: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum HttpRouteConfig {
    Route(String),
    Private { private: bool },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisTriggerConfig {
    component: String,
    channel: String,
    #[serde(default)]
    address: Option<String>,
}

/// A locked app read into this host's manifest model, and the files still to
/// be written before it can run.
pub struct Unlocked {
    pub manifest: Manifest,
    files: Vec<PendingFile>,
}

/// One of the components' files: where it goes under the files directory
/// (`<component id>/<path>`, checked) and what it holds.
struct PendingFile {
    path: PathBuf,
    content: PendingContent,
}

enum PendingContent {
    /// Inline bytes, already checked against their digest.
    Inline(Vec<u8>),
    /// A layer, by digest.
    Layer(String),
}

impl LockedApp {
    /// The app as this host's manifest model, with each component's source at
    /// `blob(digest)` and its files to be placed under `files_dir/<id>` by
    /// [`Unlocked::write_files`]. Refuses what the host cannot run, naming the
    /// field. Touches no disk: everything is checked before anything is
    /// written, so a refused app leaves nothing behind.
    pub fn into_manifest(self, blob: impl Fn(&str) -> Result<PathBuf>, files_dir: &Path) -> Result<Unlocked> {
        if self.spin_lock_version > 1 {
            bail!("spin_lock_version {}: this host reads versions 0 and 1", self.spin_lock_version);
        }
        for item in &self.must_understand {
            if item != "host_requirements" && item != "component_host_requirements" {
                bail!("must_understand: `{item}` is not understood by this host");
            }
        }
        check_host_requirements(&self.host_requirements).context("host_requirements")?;

        let text = |key: &str| self.metadata.get(key).and_then(Value::as_str).map(str::to_string);
        let name = text("name").context("metadata.name: missing")?;
        let globals = self.metadata.get("triggers").cloned().unwrap_or(Value::Null);
        let http = globals.get("http").map(|h| ApplicationHttp { base: h.get("base").and_then(Value::as_str).map(str::to_string) });
        let redis = match globals.get("redis") {
            Some(r) => Some(ApplicationRedis {
                address: r.get("address").and_then(Value::as_str).context("metadata.triggers.redis.address: missing")?.to_string(),
            }),
            None => None,
        };
        let authors = match self.metadata.get("authors") {
            Some(a) => serde_json::from_value(a.clone()).context("metadata.authors")?,
            None => Vec::new(),
        };
        let application = Application {
            name,
            version: text("version"),
            description: text("description"),
            authors,
            targets: Vec::new(),
            trigger: ApplicationTriggers { http, redis },
        };

        let variables = self
            .variables
            .into_iter()
            .map(|(name, v)| {
                let decl = VariableDecl { required: v.default.is_none(), default: v.default, secret: v.secret, description: v.description };
                (name, decl)
            })
            .collect();

        let mut trigger = Triggers::default();
        for t in self.triggers {
            let at = format!("triggers[id={}]", t.id);
            match t.trigger_type.as_str() {
                "http" => {
                    let c: HttpTriggerConfig = serde_json::from_value(t.trigger_config).with_context(|| format!("{at}.trigger_config"))?;
                    let route = match c.route {
                        HttpRouteConfig::Route(route) => HttpRoute::Route(route),
                        HttpRouteConfig::Private { private } => HttpRoute::Private(crate::manifest::PrivateRoute { private }),
                    };
                    let executor = c.executor.map(|e| serde_json::from_value(e)).transpose().with_context(|| format!("{at}.trigger_config.executor"))?;
                    trigger.http.push(HttpTrigger { id: Some(t.id), route, component: c.component, static_response: c.static_response, executor });
                }
                "redis" => {
                    let c: RedisTriggerConfig = serde_json::from_value(t.trigger_config).with_context(|| format!("{at}.trigger_config"))?;
                    trigger.redis.push(RedisTrigger { id: Some(t.id), channel: c.channel, component: c.component, address: c.address });
                }
                other => bail!("{at}.trigger_type: `{other}` triggers are not run by this host (it runs http and redis)"),
            }
        }

        let mut component = BTreeMap::new();
        let mut pending = Vec::new();
        for c in self.components {
            let at = format!("components[id={}]", c.id);
            // The id becomes a directory name below; a manifest's own ids are
            // checked the same way by `validate`.
            crate::manifest::check_component_id(&c.id).with_context(|| format!("{at}.id"))?;
            check_host_requirements(&c.host_requirements).with_context(|| format!("{at}.host_requirements"))?;
            let list = |key: &str| -> Result<Vec<String>> {
                match c.metadata.get(key) {
                    Some(v) => serde_json::from_value(v.clone()).with_context(|| format!("{at}.metadata.{key}")),
                    None => Ok(Vec::new()),
                }
            };
            let source = local_source(&c.source, &blob).with_context(|| format!("{at}.source"))?;
            let mut dependencies = BTreeMap::new();
            let mut inherit_all = None;
            for (key, dependency) in &c.dependencies {
                let path = local_source(&dependency.source, &blob).with_context(|| format!("{at}.dependencies.\"{key}\".source"))?;
                let inherits = dependency.inherit.as_ref().is_some_and(|i| i == "All");
                if inherit_all.is_some_and(|all| all != inherits) {
                    bail!("{at}.dependencies: dependencies that inherit different configuration cannot be composed by this host");
                }
                inherit_all = Some(inherits);
                dependencies.insert(key.clone(), Dependency::Local { path, export: dependency.export.clone() });
            }
            let prepared_files = if c.files.is_empty() {
                None
            } else {
                pending.extend(pending_files(&c.id, &c.files, &blob).with_context(|| format!("{at}.files"))?);
                Some(files_dir.join(&c.id))
            };
            let spec = Component {
                source: ComponentSource::Local(source),
                description: c.metadata.get("description").and_then(Value::as_str).map(str::to_string),
                variables: c.config,
                environment: c.env,
                files: Vec::new(),
                prepared_files,
                exclude_files: Vec::new(),
                allowed_outbound_hosts: list("allowed_outbound_hosts")?,
                key_value_stores: list("key_value_stores")?,
                sqlite_databases: list("databases")?,
                ai_models: list("ai_models")?,
                build: None,
                tool: BTreeMap::new(),
                dependencies_inherit_configuration: inherit_all.unwrap_or(false),
                dependencies,
            };
            if component.insert(c.id.clone(), spec).is_some() {
                bail!("{at}: duplicate component id");
            }
        }
        let manifest = Manifest { spin_manifest_version: 2, application, variables, trigger, component };
        manifest.validate()?;
        Ok(Unlocked { manifest, files: pending })
    }
}

impl Unlocked {
    /// Writes the components' files under `files_dir` (a fresh directory of
    /// the host's own), layers from `blob(digest)`.
    pub fn write_files(&self, files_dir: &Path, blob: impl Fn(&str) -> Result<PathBuf>) -> Result<()> {
        for file in &self.files {
            let mut out = crate::confined::create_file(files_dir, &file.path)?;
            match &file.content {
                PendingContent::Inline(bytes) => out.write_all(bytes)?,
                PendingContent::Layer(digest) => {
                    let from = blob(digest)?;
                    let mut input = std::fs::File::open(&from).with_context(|| format!("cannot read {}", from.display()))?;
                    std::io::copy(&mut input, &mut out)?;
                }
            };
        }
        Ok(())
    }
}

fn check_host_requirements(requirements: &Map<String, Value>) -> Result<()> {
    for key in requirements.keys() {
        if key != SERVICE_CHAINING {
            bail!("`{key}` is required but not provided by this host");
        }
    }
    Ok(())
}

/// A component's files, checked: each path is a plain relative path (no root,
/// no `..`) named once, inline content matches its digest, and any other
/// content is a layer of the artifact.
fn pending_files(id: &str, files: &[LockedFile], blob: &impl Fn(&str) -> Result<PathBuf>) -> Result<Vec<PendingFile>> {
    use base64::Engine;
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let relative = crate::confined::relative(&file.path).with_context(|| format!("path `{}`", file.path))?;
        if !seen.insert(relative.clone()) {
            bail!("path `{}` is given twice", file.path);
        }
        let digest = file.content.digest.as_deref().with_context(|| format!("`{}`: no digest", file.path))?;
        let content = match &file.content.inline {
            Some(inline) => {
                let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(inline.trim_end_matches('='))
                    .with_context(|| format!("`{}`: inline content is not base64", file.path))?;
                let actual = crate::oci::sha256_digest(&bytes);
                if actual != digest {
                    bail!("`{}`: inline content does not match its digest {digest} (it is {actual})", file.path);
                }
                PendingContent::Inline(bytes)
            }
            None => {
                blob(digest).with_context(|| format!("`{}`", file.path))?;
                PendingContent::Layer(digest.to_string())
            }
        };
        out.push(PendingFile { path: Path::new(id).join(relative), content });
    }
    Ok(out)
}

/// The path of a source's content: only digests (layers) are accepted, since a
/// pushed app must not make the host read URLs or local files it names.
fn local_source(source: &LockedSource, blob: &impl Fn(&str) -> Result<PathBuf>) -> Result<String> {
    let Some(digest) = &source.content.digest else {
        bail!("no `digest`: only sources stored as layers can be run from a registry");
    };
    if source.content.inline.is_some() || source.content.source.is_some() {
        bail!("`inline` and `source` are not accepted for Wasm from a registry; expected a layer digest only");
    }
    Ok(blob(digest)?.to_str().context("cache path is not UTF-8")?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Manifest {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spin.toml");
        std::fs::write(&path, text).unwrap();
        Manifest::load(&path).unwrap()
    }

    const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "shop"
version = "1.2.0"
authors = ["A <a@example.com>"]
[application.trigger.redis]
address = "{{ redis_url }}"
[variables]
redis_url = { default = "redis://127.0.0.1" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/orders/..."
component = "order"
[[trigger.http]]
route = { private = true }
component = "order"
[[trigger.http]]
route = "/gone"
static_response = { status_code = 410, headers = { x-why = "moved" }, body = "gone" }
[[trigger.redis]]
channel = "orders.created"
component = "worker"
[component.order]
source = "order.wasm"
key_value_stores = ["default"]
allowed_outbound_hosts = ["http://gateway.spin.internal", "{{ redis_url }}"]
environment = { MODE = "test" }
[component.order.variables]
token = "{{ token }}"
[component.worker]
source = "worker.wasm"
"#;

    fn digests() -> BTreeMap<String, String> {
        [("order", "sha256:aa"), ("worker", "sha256:bb")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn lock_writes_spins_shape() {
        let locked = serde_json::to_value(lock(&manifest(APP), &digests(), BTreeMap::new()).unwrap()).unwrap();
        assert_eq!(locked["spin_lock_version"], 1);
        assert_eq!(locked["must_understand"], json!(["component_host_requirements"]));
        assert_eq!(locked["metadata"]["name"], "shop");
        assert_eq!(locked["metadata"]["triggers"]["redis"]["address"], "{{ redis_url }}");
        assert_eq!(locked["variables"]["token"], json!({ "secret": true }));
        assert_eq!(locked["triggers"][0], json!({ "id": "http-order", "trigger_type": "http", "trigger_config": { "component": "order", "route": "/orders/..." } }));
        assert_eq!(locked["triggers"][1]["id"], "http-order-1");
        assert_eq!(locked["triggers"][1]["trigger_config"]["route"], json!({ "private": true }));
        assert_eq!(
            locked["triggers"][2],
            json!({ "id": "http-static", "trigger_type": "http", "trigger_config": { "route": "/gone", "static_response": { "status_code": 410, "headers": { "x-why": "moved" }, "body": "gone" } } })
        );
        assert_eq!(locked["triggers"][3]["trigger_config"], json!({ "component": "worker", "channel": "orders.created" }));
        let order = &locked["components"][0];
        assert_eq!(order["source"], json!({ "content_type": "application/wasm", "digest": "sha256:aa" }));
        assert_eq!(order["config"]["token"], "{{ token }}");
        assert_eq!(order["env"]["MODE"], "test");
        assert_eq!(order["host_requirements"], json!({ "local_service_chaining": "required" }));
        assert_eq!(locked["components"][1].get("host_requirements"), None);
    }

    #[test]
    fn a_locked_app_reads_back_as_the_same_manifest() {
        let original = manifest(APP);
        let json = serde_json::to_vec(&lock(&original, &digests(), BTreeMap::new()).unwrap()).unwrap();
        let locked: LockedApp = serde_json::from_slice(&json).unwrap();
        let back = locked.into_manifest(|digest| Ok(PathBuf::from(format!("/cache/{digest}"))), Path::new("/nowhere")).unwrap().manifest;
        assert_eq!(back.application.name, "shop");
        assert_eq!(back.application.version.as_deref(), Some("1.2.0"));
        assert!(back.variables["token"].required && back.variables["token"].secret);
        assert_eq!(back.variables["redis_url"].default.as_deref(), Some("redis://127.0.0.1"));
        assert_eq!(back.trigger.http.len(), 3);
        let gone = back.trigger.http[2].static_response.as_ref().unwrap();
        assert_eq!((gone.status_code, gone.headers["x-why"].as_str(), gone.body.as_deref()), (Some(410), "moved", Some("gone")));
        assert_eq!(back.trigger.http[2].component, None);
        assert_eq!(back.trigger.redis[0].channel, "orders.created");
        assert_eq!(back.application.trigger.redis.as_ref().unwrap().address, "{{ redis_url }}");
        let order = &back.component["order"];
        assert!(matches!(&order.source, ComponentSource::Local(p) if p == "/cache/sha256:aa"));
        assert_eq!(order.key_value_stores, ["default"]);
        assert_eq!(order.allowed_outbound_hosts, original.component["order"].allowed_outbound_hosts);
        assert_eq!(order.variables["token"], "{{ token }}");
    }

    fn read(json: Value) -> Result<Manifest> {
        let locked: LockedApp = serde_json::from_value(json)?;
        locked.into_manifest(|digest| Ok(PathBuf::from(digest)), Path::new("/nowhere")).map(|u| u.manifest)
    }

    fn minimal() -> Value {
        json!({
            "spin_lock_version": 0,
            "metadata": { "name": "app" },
            "triggers": [{ "id": "t", "trigger_type": "http", "trigger_config": { "component": "c", "route": "/..." } }],
            "components": [{ "id": "c", "source": { "content_type": "application/wasm", "digest": "sha256:cc" } }]
        })
    }

    /// Reads `app` and writes its files into a fresh directory (blobs are
    /// files named by their digest under `blobs`).
    fn unpack(app: Value, blobs: &Path) -> (Result<(), String>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let blob = |digest: &str| Ok(blobs.join(digest));
        let result = serde_json::from_value::<LockedApp>(app)
            .map_err(anyhow::Error::from)
            .and_then(|locked| locked.into_manifest(blob, dir.path()))
            .and_then(|unlocked| unlocked.write_files(dir.path(), blob));
        (result.map_err(|e| format!("{e:#}")), dir)
    }

    #[test]
    fn files_are_written_only_under_their_root_and_only_when_they_match_their_digest() {
        let with_files = |files: Value| {
            let mut app = minimal();
            app["components"][0]["files"] = files;
            unpack(app, Path::new("/nowhere"))
        };
        // Inline content is base64 without padding, as Spin writes it.
        let tiny = crate::oci::sha256_digest(b"tiny");
        let wrong_digest = "sha256:8a7a1b3a9a3b8b0f1f5e1c7e0c7d4e9b8f4d3a0f7e8c2b1a0d9e8f7a6b5c4d3e";
        let (ok, dir) = with_files(json!([{ "path": "srv/t.txt", "inline": "dGlueQ", "digest": tiny }]));
        assert_eq!(ok, Ok(()));
        assert_eq!(std::fs::read(dir.path().join("c/srv/t.txt")).unwrap(), b"tiny");
        let (wrong, _) = with_files(json!([{ "path": "srv/t.txt", "inline": "dGlueQ", "digest": wrong_digest }]));
        assert!(wrong.unwrap_err().contains("does not match its digest"));
        let (twice, _) = with_files(json!([{ "path": "a", "inline": "dGlueQ", "digest": tiny }, { "path": "./a", "inline": "dGlueQ", "digest": tiny }]));
        assert!(twice.unwrap_err().contains("given twice"));
        for (path, expected) in [("../../escaped", "contains `..`"), ("/tmp/escaped", "absolute path"), ("", "names no file")] {
            // A good file first: a refused app writes none of its files.
            let (refused, dir) = with_files(json!([
                { "path": "first.txt", "inline": "dGlueQ", "digest": tiny },
                { "path": path, "inline": "dGlueQ", "digest": tiny },
            ]));
            let err = refused.unwrap_err();
            assert!(err.contains(expected), "{path}: {err}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{path}: nothing written");
        }
    }

    #[test]
    fn component_ids_are_checked_before_any_file_is_written() {
        let tiny = crate::oci::sha256_digest(b"tiny");
        for id in ["/tmp/wharf-escape", "../../escape", "a/b", ".."] {
            let mut app = minimal();
            app["components"][0]["id"] = json!(id);
            app["triggers"][0]["trigger_config"]["component"] = json!(id);
            app["components"][0]["files"] = json!([{ "path": "x", "inline": "dGlueQ", "digest": tiny }]);
            let (refused, dir) = unpack(app, Path::new("/nowhere"));
            let err = refused.unwrap_err();
            assert!(err.contains("invalid component id"), "{id}: {err}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{id}");
            assert!(!Path::new("/tmp/wharf-escape").exists());
        }
    }

    #[test]
    fn what_the_host_cannot_honour_is_refused_by_name() {
        assert!(read(minimal()).is_ok());
        let cases: Vec<(fn(&mut Value), &str)> = vec![
            (|v| v["must_understand"] = json!(["time_travel"]), "must_understand: `time_travel`"),
            (|v| v["components"][0]["host_requirements"] = json!({ "gpu": "required" }), "`gpu` is required"),
            (|v| v["triggers"][0]["trigger_type"] = json!("cron"), "`cron` triggers"),
            (|v| v["triggers"][0]["trigger_config"]["static_response"] = json!({}), "`component` or `static_response`, not both"),
            (|v| v["triggers"][0]["trigger_config"]["static_response"] = json!({ "code": 200 }), "unknown field `code`"),
            (|v| v["components"][0]["source"] = json!({ "content_type": "application/wasm", "source": "file:///etc/passwd" }), "no `digest`"),
            (|v| v["triggers"][0]["trigger_config"]["component"] = json!("nope"), "no component named `nope`"),
            (|v| v["spin_lock_version"] = json!(2), "spin_lock_version 2"),
        ];
        for (mutate, expected) in cases {
            let mut value = minimal();
            mutate(&mut value);
            let err = format!("{:#}", read(value).unwrap_err());
            assert!(err.contains(expected), "expected `{expected}` in: {err}");
        }
    }
}
