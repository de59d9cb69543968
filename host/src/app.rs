//! Loading an app: manifest + runtime config → compiled, linked components
//! ready to instantiate, and the shared capability state they use.

use crate::allowed_hosts::AllowedHosts;
use crate::engine::{CompileCache, EngineKind, EngineOptions};
use crate::guest_log::GuestOutput;
use crate::capabilities::key_value::{self, Backend, KeyValueAccess, Stores};
use crate::manifest::{ComponentSource, Manifest};
use crate::capabilities::outbound_http::{LocalServices, OutboundHttp, Timeouts};
use crate::capabilities::outbound_redis::{RedisAccess, RedisPool};
use crate::capabilities::outbound_mqtt::MqttAccess;
use crate::capabilities::outbound_pg::{PgAccess, PgPools};
use crate::capabilities::unsupported::Unsupported;
use crate::capabilities::sqlite::{Database, Databases, SqliteAccess};
use crate::runtime_config::{KeyValueStoreConfig, RuntimeConfig, SqliteDatabaseConfig, VariablesProviderConfig};
use crate::state::InstanceState;
use crate::capabilities::variables::{EnvProvider, Provider, StaticProvider, Variables};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::WasiHttpCtx;

#[derive(Debug, Clone)]
pub struct AppOptions {
    /// `spin.toml`, or a directory containing one.
    pub manifest: PathBuf,
    pub runtime_config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    /// Load only these components (and the triggers that use them); all when empty.
    pub component_ids: Vec<String>,
    /// Environment variables passed to every component (`--env K=V`).
    pub component_env: Vec<(String, String)>,
    /// The process environment, where `SPIN_VARIABLE_*` are read.
    pub process_env: HashMap<String, String>,
    pub engine: EngineOptions,
    /// Compiled-code cache directory; `None` compiles at every start.
    pub cache_dir: Option<PathBuf>,
    pub outbound_timeouts: Timeouts,
}

/// A loaded app.
pub struct App {
    pub name: String,
    pub manifest: Manifest,
    pub variables: Variables,
    pub components: BTreeMap<String, Arc<LoadedComponent>>,
    pub local: LocalServices,
    /// The components' `files`, copied at load; removed with the app.
    _files: Option<tempfile::TempDir>,
}

/// One component, compiled and linked, plus what each of its instances gets.
pub struct LoadedComponent {
    pub id: Arc<str>,
    pub pre: InstancePre<InstanceState>,
    /// Whether its synchronous `wasi:keyvalue` calls may wait on I/O: it
    /// imports the interface and one of its stores is a backend that waits
    /// (see the HTTP trigger's instance policy).
    pub sync_calls_wait: bool,
    /// The component's `files`, mounted read-only at `/`.
    files: Option<PathBuf>,
    env: Vec<(String, String)>,
    variables: Arc<HashMap<String, String>>,
    allowed_hosts: Arc<AllowedHosts>,
    key_value_labels: Arc<HashSet<String>>,
    stores: Stores,
    sqlite_labels: Arc<HashSet<String>>,
    databases: Databases,
    redis_pool: Arc<RedisPool>,
    /// This component's PostgreSQL sessions (Spin pools them per component).
    pg_pools: Arc<PgPools>,
    ai_models: Arc<HashSet<String>>,
    local: LocalServices,
    timeouts: Timeouts,
}

impl LoadedComponent {
    /// The names the component exports, comma-separated (or `nothing`), for
    /// errors that must say what a component offers when it offers nothing a
    /// trigger runs.
    pub fn exports(&self) -> String {
        let component = self.pre.component();
        let component_type = component.component_type();
        let names: Vec<&str> = component_type.exports(component.engine()).map(|(name, _)| name).collect();
        if names.is_empty() { "nothing".to_string() } else { names.join(", ") }
    }

    /// A fresh store for one instance of this component, of its engine.
    pub fn new_store(&self) -> Result<Store<InstanceState>> {
        let mut wasi = WasiCtx::builder();
        wasi.envs(&self.env).stdout(GuestOutput::stdout(self.id.clone())).stderr(GuestOutput::stderr(self.id.clone()));
        if let Some(files) = &self.files {
            wasi.preopened_dir(files, "/", wasmtime_wasi::FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("cannot mount the files of `{}` from {}", self.id, files.display()))?;
        }
        crate::capabilities::sockets::grant(&mut wasi, self.id.clone(), self.allowed_hosts.clone());
        let wasi = wasi.build();
        let state = InstanceState {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            outbound_http: OutboundHttp {
                component: self.id.clone(),
                allowed: self.allowed_hosts.clone(),
                local: self.local.clone(),
                timeouts: self.timeouts,
            },
            key_value: KeyValueAccess::new(self.stores.clone(), self.key_value_labels.clone()),
            redis: RedisAccess { allowed: self.allowed_hosts.clone(), pool: self.redis_pool.clone() },
            mqtt: MqttAccess::new(self.allowed_hosts.clone()),
            postgres: PgAccess { allowed: self.allowed_hosts.clone(), pools: self.pg_pools.clone() },
            sqlite: SqliteAccess::new(self.databases.clone(), self.sqlite_labels.clone()),
            unsupported: Unsupported { allowed: self.allowed_hosts.clone(), ai_models: self.ai_models.clone() },
            variables: self.variables.clone(),
        };
        let mut store = Store::new(self.pre.component().engine(), state);
        // Yield to the host at every epoch tick: a looping guest can then be
        // stopped by its deadline, and other work on the same thread goes on.
        store.epoch_deadline_async_yield_and_update(1);
        store.set_epoch_deadline(1);
        Ok(store)
    }
}

/// The manifest path for `-f`: a file, or a directory holding `spin.toml`.
pub fn manifest_path(given: &Path) -> PathBuf {
    if given.is_dir() { given.join("spin.toml") } else { given.to_path_buf() }
}

/// What components of `kind` may import. Every kind gets the interfaces
/// whose functions are synchronous in WIT (WASI 0.2 and its release
/// candidate, Spin 2.x/3.x's, `wasi:keyvalue`); P3 adds WASI 0.3 and Spin's
/// async `spin:*` interfaces, which an engine without concurrency support
/// cannot link.
pub fn new_linker(engine: &Engine, kind: EngineKind) -> Result<Linker<InstanceState>> {
    use crate::bindings::imports::{spin, wasi::keyvalue};
    type Host = HasSelf<InstanceState>;
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // wasi:http@0.2 for WASIp2 components; outbound requests go through the
    // same hooks (allow-list, timeouts, local chaining) as WASIp3's.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::bindings::p2::Imports::add_to_linker::<InstanceState, Host>(&mut linker, |s| s)?;
    crate::capabilities::wasi_2023_10_18::add_to_linker(&mut linker)?;
    keyvalue::store::add_to_linker::<InstanceState, Host>(&mut linker, |s| s)?;
    keyvalue::atomics::add_to_linker::<InstanceState, Host>(&mut linker, |s| s)?;
    keyvalue::batch::add_to_linker::<InstanceState, Host>(&mut linker, |s| s)?;
    if kind == EngineKind::P3 {
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        spin::key_value::key_value::add_to_linker::<InstanceState, Host>(&mut linker, |s| s)?;
        spin::variables::variables::add_to_linker::<InstanceState, Host>(&mut linker, |s| s)?;
        spin::redis::redis::add_to_linker::<InstanceState, Host>(&mut linker, |s| s)?;
        spin::mqtt::mqtt::add_to_linker::<InstanceState, Host>(&mut linker, |s| s)?;
        spin::mysql::mysql::add_to_linker::<InstanceState, Host>(&mut linker, |s| s)?;
        spin::sqlite::sqlite::add_to_linker::<InstanceState, Host>(&mut linker, |s| s)?;
        spin::postgres::postgres::add_to_linker::<InstanceState, Host>(&mut linker, |s| s)?;
    }
    Ok(linker)
}

/// The engine and linker of each kind, made when the first component of
/// that kind loads: an app of WASIp2 components alone reserves no pool for
/// WASIp3 ones, nor the reverse.
#[derive(Default)]
struct Engines {
    p3: Option<(Engine, Linker<InstanceState>)>,
    p2: Option<(Engine, Linker<InstanceState>)>,
}

impl Engines {
    fn get(&mut self, kind: EngineKind, options: &EngineOptions) -> Result<&(Engine, Linker<InstanceState>)> {
        let slot = match kind {
            EngineKind::P3 => &mut self.p3,
            EngineKind::P2 => &mut self.p2,
        };
        if slot.is_none() {
            let engine = crate::engine::new_engine(options, kind)?;
            let linker = new_linker(&engine, kind)?;
            *slot = Some((engine, linker));
        }
        Ok(slot.as_ref().expect("made above"))
    }
}

/// Where a manifest came from: names it in errors and places its state.
pub struct ManifestOrigin {
    /// The file or registry reference, as errors name it.
    pub label: String,
    /// What relative paths in the manifest are relative to.
    pub base_dir: PathBuf,
    /// Where the `default` store lives unless `--state-dir` or the runtime
    /// config say otherwise; `None` keeps it in memory.
    pub default_state_dir: Option<PathBuf>,
}

impl App {
    /// Loads the app from the `spin.toml` named by `options.manifest`.
    pub fn load(options: &AppOptions) -> Result<Self> {
        let manifest_path = manifest_path(&options.manifest);
        let manifest = Manifest::load(&manifest_path)?;
        let base_dir = Manifest::base_dir(&manifest_path);
        let origin =
            ManifestOrigin { label: manifest_path.display().to_string(), default_state_dir: Some(base_dir.join(".spin")), base_dir };
        Self::from_manifest(manifest, &origin, options)
    }

    /// Loads an app from a manifest already read (from a file or a registry);
    /// `options.manifest` is not used.
    pub fn from_manifest(mut manifest: Manifest, origin: &ManifestOrigin, options: &AppOptions) -> Result<Self> {
        let app_dir = &origin.base_dir;
        let runtime_config = match &options.runtime_config {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };

        let variables = Variables::resolve(&manifest.variables, &providers(&runtime_config, &options.process_env)?)?;
        let state_dir = options
            .state_dir
            .clone()
            .or_else(|| runtime_config.state_dir.as_ref().map(|d| runtime_config.resolve(d)))
            .or_else(|| origin.default_state_dir.clone());
        let default_used = manifest.component.values().any(|c| c.key_value_stores.iter().any(|label| label == "default"));
        let stores = open_stores(&runtime_config, state_dir.as_deref(), default_used)?;
        let default_database_used =
            manifest.component.values().any(|c| c.sqlite_databases.iter().any(|label| label == "default"));
        let databases = open_databases(&runtime_config, state_dir.as_deref(), default_database_used)?;

        for id in &options.component_ids {
            if !manifest.component.contains_key(id) {
                bail!("--component-id {id}: no such component in {}", origin.label);
            }
        }
        if !options.component_ids.is_empty() {
            // A selection runs the triggers of the selected components, as
            // Spin's does; a static response belongs to no component.
            manifest.trigger.http.retain(|trigger| trigger.static_response.is_none());
        }
        let mut engines = Engines::default();
        let cache = CompileCache::new(options.cache_dir.clone());
        let redis_pool = Arc::new(RedisPool::default());
        let local = LocalServices::default();

        let mut components = BTreeMap::new();
        let mut files_root: Option<tempfile::TempDir> = None;
        for (id, spec) in &manifest.component {
            if !options.component_ids.is_empty() && !options.component_ids.contains(id) {
                continue;
            }
            let context = || format!("{}: component.{id}", origin.label);
            let files = if let Some(prepared) = &spec.prepared_files {
                Some(prepared.clone())
            } else if spec.files.is_empty() {
                None
            } else {
                let root = match &mut files_root {
                    Some(root) => root,
                    None => files_root.insert(tempfile::Builder::new().prefix("wharf-files-").tempdir()?),
                };
                let dir = root.path().join(id);
                crate::files::materialize(spec, app_dir, &dir).with_context(context)?;
                Some(dir)
            };
            key_value::check_labels(id, &spec.key_value_stores, &stores).with_context(context)?;
            databases.check_labels(id, &spec.sqlite_databases).with_context(context)?;
            let wasm = crate::compose::component_bytes(&manifest, app_dir, id).with_context(context)?;
            let (engine, linker) = engines.get(EngineKind::of(&wasm), &options.engine).with_context(context)?;
            let component = cache.load(engine, &wasm).with_context(context)?;
            let pre = linker.instantiate_pre(&component).map_err(anyhow::Error::from).with_context(context)?;
            let sync_calls_wait = component.component_type().imports(engine).any(|(name, _)| name.starts_with("wasi:keyvalue/"))
                && spec.key_value_stores.iter().any(|label| stores.get(label).is_some_and(|b| b.waits_on_io()));
            let rendered = |text: &String| variables.render(text);
            let allowed_outbound_hosts = spec.allowed_outbound_hosts.iter().map(rendered).collect::<Result<Vec<_>>>().with_context(context)?;
            let component_variables = spec
                .variables
                .iter()
                .map(|(k, v)| Ok((k.clone(), variables.render(v)?)))
                .collect::<Result<HashMap<_, _>>>()
                .with_context(context)?;
            // `--env` overrides the manifest: WASI hands the guest every
            // entry and getenv takes the first, so merge rather than append.
            let mut env: BTreeMap<String, String> = spec.environment.clone();
            env.extend(options.component_env.iter().cloned());
            let env = env.into_iter().collect();
            components.insert(
                id.clone(),
                Arc::new(LoadedComponent {
                    id: id.as_str().into(),
                    pre,
                    sync_calls_wait,
                    files,
                    env,
                    variables: Arc::new(component_variables),
                    allowed_hosts: Arc::new(AllowedHosts::parse(&allowed_outbound_hosts).with_context(|| format!("{}.allowed_outbound_hosts", context()))?),
                    key_value_labels: Arc::new(spec.key_value_stores.iter().cloned().collect()),
                    stores: stores.clone(),
                    sqlite_labels: Arc::new(spec.sqlite_databases.iter().cloned().collect()),
                    databases: databases.clone(),
                    redis_pool: redis_pool.clone(),
                    pg_pools: Arc::default(),
                    ai_models: Arc::new(spec.ai_models.iter().cloned().collect()),
                    local: local.clone(),
                    timeouts: options.outbound_timeouts,
                }),
            );
        }
        Ok(Self { name: manifest.application.name.clone(), manifest, variables, components, local, _files: files_root })
    }
}

/// Runtime-config providers first (in file order), then `SPIN_VARIABLE_*`, as Spin orders them.
fn providers(config: &RuntimeConfig, env: &HashMap<String, String>) -> Result<Vec<Box<dyn Provider>>> {
    let mut providers: Vec<Box<dyn Provider>> = Vec::new();
    for p in &config.variables_provider {
        match p {
            VariablesProviderConfig::Static { values } => providers.push(Box::new(StaticProvider(values.clone()))),
            VariablesProviderConfig::Env { prefix, dotenv_path } => {
                let mut vars = env.clone();
                if let Some(path) = dotenv_path {
                    vars.extend(read_dotenv(&config.resolve(path))?);
                }
                let prefix = prefix.as_deref().unwrap_or("SPIN_VARIABLE").trim_end_matches('_').to_string();
                providers.push(Box::new(EnvProvider { prefix, env: vars }));
            }
        }
    }
    providers.push(Box::new(EnvProvider { prefix: "SPIN_VARIABLE".into(), env: env.clone() }));
    Ok(providers)
}

fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read dotenv file {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect())
}

/// The stores of the runtime config, and `default` when a component uses it
/// and the runtime config does not place it: SQLite in the state dir (in
/// memory without one). No file is created for an app that has no use for it.
fn open_stores(config: &RuntimeConfig, state_dir: Option<&Path>, default_used: bool) -> Result<Stores> {
    let mut by_label: BTreeMap<String, Arc<dyn Backend>> = BTreeMap::new();
    for (label, store) in &config.key_value_store {
        let backend: Arc<dyn Backend> = match store {
            KeyValueStoreConfig::Spin { path: Some(path) } => {
                let path = config.resolve(path);
                Arc::new(key_value::sqlite::SqliteBackend::open(&path, label).with_context(|| format!("open key-value store `{label}` {}", path.display()))?)
            }
            KeyValueStoreConfig::Spin { path: None } => Arc::new(key_value::sqlite::SqliteBackend::in_memory(label)?),
            KeyValueStoreConfig::Redis { url } => Arc::new(key_value::redis::RedisBackend::new(url)?),
        };
        by_label.insert(label.clone(), backend);
    }
    if default_used && !by_label.contains_key("default") {
        let backend = match state_dir {
            Some(dir) => {
                let path = dir.join("sqlite_key_value.db");
                key_value::sqlite::SqliteBackend::open(&path, "default").with_context(|| format!("open default key-value store {}", path.display()))?
            }
            None => {
                tracing::warn!("no state directory: the `default` key-value store is in memory and ends with the process (set --state-dir or a runtime-config store)");
                key_value::sqlite::SqliteBackend::in_memory("default")?
            }
        };
        by_label.insert("default".into(), Arc::new(backend));
    }
    Ok(Stores::new(by_label))
}

/// The databases of the runtime config, and `default` when a component uses
/// it and the runtime config does not place it: `sqlite_db.db` in the state
/// dir, as Spin names it (in memory without a state dir).
fn open_databases(config: &RuntimeConfig, state_dir: Option<&Path>, default_used: bool) -> Result<Databases> {
    let mut by_label = BTreeMap::new();
    for (label, database) in &config.sqlite_database {
        let database = match database {
            SqliteDatabaseConfig::Spin { path: Some(path) } => Database::file(&config.resolve(path)),
            SqliteDatabaseConfig::Spin { path: None } => Database::in_memory(),
        };
        by_label.insert(label.clone(), Arc::new(database.with_context(|| format!("sqlite_database.{label}"))?));
    }
    if default_used && !by_label.contains_key("default") {
        let database = match state_dir {
            Some(dir) => Database::file(&dir.join("sqlite_db.db"))?,
            None => {
                tracing::warn!("no state directory: the `default` SQLite database is in memory and ends with the process (set --state-dir or a runtime-config database)");
                Database::in_memory()?
            }
        };
        by_label.insert("default".into(), Arc::new(database));
    }
    Ok(Databases::new(by_label))
}

/// The bytes of a component's source file.
pub fn read_source(manifest: &Manifest, app_dir: &Path, id: &str) -> Result<Vec<u8>> {
    let ComponentSource::Local(path) = &manifest.component[id].source else {
        bail!("only local sources are supported");
    };
    let path = app_dir.join(path);
    std::fs::read(&path).with_context(|| format!("source: cannot read {} (was the component built? try `wharf build`)", path.display()))
}
