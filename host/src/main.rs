//! `wharf`: run Spin apps on our wasmtime host.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wharf::app::{App, AppOptions, ManifestOrigin};
use wharf::engine::{CompileCache, EngineOptions};
use wharf::http_trigger::{HttpOptions, HttpTrigger, InstancePolicy};
use wharf::manifest::HttpAnswer;
use wharf::metrics::Metrics;
use wharf::oci::{PullLimits, RegistryOptions};
use wharf::capabilities::outbound_http::Timeouts;

#[derive(Parser)]
#[command(name = "wharf", version, about = "A Spin-compatible WebAssembly component host")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the app.
    Up(UpArgs),
    /// Run each component's build command from spin.toml.
    Build {
        /// The manifest, or a directory containing spin.toml.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        from: PathBuf,
    },
    /// Push the app to an OCI registry, or pull it, in Spin's layout.
    #[command(subcommand)]
    Registry(RegistryCommand),
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Push the app (each component composed with its dependencies) to REFERENCE.
    Push {
        /// Where to push, e.g. ghcr.io/acme/shop:v1.
        reference: String,
        /// The manifest, or a directory containing spin.toml.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        from: PathBuf,
        /// Use plain HTTP for the registry.
        #[arg(short = 'k', long)]
        insecure: bool,
    },
    /// Pull the app at REFERENCE into the cache, as `up -f REFERENCE` would.
    Pull {
        reference: String,
        /// Use plain HTTP for the registry.
        #[arg(short = 'k', long)]
        insecure: bool,
        /// The host's cache directory.
        #[arg(long = "cache-dir")]
        cache_dir: Option<PathBuf>,
        #[command(flatten)]
        limits: PullLimitArgs,
    },
}

/// Caps on what a registry may send (see [`PullLimits`]).
#[derive(Args)]
struct PullLimitArgs {
    /// Most layers an app's image may have.
    #[arg(long = "max-layers", default_value_t = PullLimits::default().max_layers)]
    max_layers: usize,
    /// Largest locked app (the app's JSON layer), in bytes.
    #[arg(long = "max-locked-app-bytes", default_value_t = PullLimits::default().max_locked_app_bytes)]
    max_locked_app_bytes: u64,
    /// Largest image config, in bytes.
    #[arg(long = "max-config-bytes", default_value_t = PullLimits::default().max_config_bytes)]
    max_config_bytes: u64,
    /// Largest Wasm or data layer, in bytes.
    #[arg(long = "max-blob-bytes", default_value_t = PullLimits::default().max_blob_bytes)]
    max_blob_bytes: u64,
    /// Most bytes of Wasm and data layers for one app, in bytes.
    #[arg(long = "max-app-bytes", default_value_t = PullLimits::default().max_app_bytes)]
    max_app_bytes: u64,
}

impl From<PullLimitArgs> for PullLimits {
    fn from(a: PullLimitArgs) -> Self {
        Self {
            max_layers: a.max_layers,
            max_locked_app_bytes: a.max_locked_app_bytes,
            max_config_bytes: a.max_config_bytes,
            max_blob_bytes: a.max_blob_bytes,
            max_app_bytes: a.max_app_bytes,
        }
    }
}

#[derive(Args)]
struct UpArgs {
    /// The manifest, a directory containing spin.toml, or a registry
    /// reference with its registry named (ghcr.io/acme/shop:v1).
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    from: PathBuf,
    /// Use plain HTTP for the registry given to `-f`.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Address the HTTP trigger listens on.
    #[arg(long, env = "SPIN_HTTP_LISTEN_ADDR", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    #[arg(long = "runtime-config-file")]
    runtime_config_file: Option<PathBuf>,
    /// Run only this component (repeatable); triggers of others are not started.
    #[arg(long = "component-id")]
    component_id: Vec<String>,
    /// Environment variable for every component, KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_parser = parse_key_value)]
    env: Vec<(String, String)>,
    /// Where the default key-value store lives (default: .spin next to spin.toml).
    #[arg(long = "state-dir")]
    state_dir: Option<PathBuf>,
    /// Requests one instance serves in turn before it is retired (1 with 1 below: a fresh instance per request).
    #[arg(long = "max-instance-reuse-count", default_value_t = 128)]
    max_instance_reuse_count: usize,
    /// Requests one instance serves at once.
    #[arg(long = "max-instance-concurrent-reuse-count", default_value_t = 16)]
    max_instance_concurrent_reuse_count: usize,
    /// Deadline of each HTTP request and each Redis message's handler, in seconds.
    #[arg(long = "request-timeout", default_value_t = 30.0)]
    request_timeout: f64,
    /// Idle instances are dropped after this many seconds.
    #[arg(long = "idle-instance-timeout", default_value_t = 10.0)]
    idle_instance_timeout: f64,
    /// Largest request body accepted, in bytes (413 beyond).
    #[arg(long = "max-request-body", default_value_t = 10 * 1024 * 1024)]
    max_request_body: u64,
    /// Component instances alive at once (503 when all are taken).
    #[arg(long = "max-instances", default_value_t = 512)]
    max_instances: u32,
    /// Cap on each instance's linear memory, in bytes.
    #[arg(long = "max-instance-memory", env = "SPIN_MAX_INSTANCE_MEMORY", default_value_t = 128 * 1024 * 1024)]
    max_instance_memory: usize,
    /// Write /tmp/perf-<pid>.map, which names the guests' compiled functions
    /// in `perf` profiles.
    #[arg(long = "perf-map")]
    perf_map: bool,
    /// Address of the host's Prometheus metrics (off when not given).
    #[arg(long = "metrics-listen")]
    metrics_listen: Option<SocketAddr>,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT
    /// (default: the request deadline plus one second, so every request in
    /// flight ends by its own deadline at the latest, not cut off).
    #[arg(long = "shutdown-grace")]
    shutdown_grace: Option<f64>,
    /// Outbound HTTP connect timeout, in seconds.
    #[arg(long = "outbound-connect-timeout", default_value_t = 5.0)]
    outbound_connect_timeout: f64,
    /// Outbound HTTP time to first response byte, in seconds.
    #[arg(long = "outbound-first-byte-timeout", default_value_t = 30.0)]
    outbound_first_byte_timeout: f64,
    /// The host's cache directory: compiled code and pulled blobs.
    #[arg(long = "cache-dir")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pull_limits: PullLimitArgs,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))
}

fn seconds(name: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| anyhow::anyhow!("--{name}: expected a non-negative number of seconds"))
}

/// Every request allocates dozens of small objects in the host (futures,
/// header maps, resource table entries); mimalloc's per-thread free lists
/// serve them in fewer instructions than glibc's malloc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Log lines waiting for the writer thread; past this, new lines are
/// dropped. Guest lines are cut at 16 KiB, so the queue holds at most
/// 64 MiB.
const LOG_QUEUE_LINES: usize = 4096;

fn main() {
    // The log goes out through a thread of its own. Written in place, a
    // stdout nobody reads (a container runtime's log pipe that stalls) would
    // block the runtime thread that logs, and every request on it, with no
    // 504 at the deadline (host/tests/limits.rs); queued, lines past the
    // queue's bound are dropped instead.
    let (log_writer, log_flushed_on_drop) =
        tracing_appender::non_blocking::NonBlockingBuilder::default().buffered_lines_limit(LOG_QUEUE_LINES).lossy(true).finish(std::io::stdout());
    tracing_subscriber::fmt()
        .with_writer(log_writer)
        // tokio-postgres logs every NOTICE a server sends at info, and a
        // guest can make the server send any number of them (RAISE NOTICE).
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tokio_postgres=warn".into()))
        .with_target(true)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => runtime().and_then(|rt| rt.block_on(up(args))),
        Command::Build { from } => build(&from),
        Command::Registry(command) => runtime().and_then(|rt| rt.block_on(registry(command))),
    };
    // `exit` runs no destructors: write out what is queued first.
    drop(log_flushed_on_drop);
    if let Err(e) = result {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// The pulled-blob cache: `--cache-dir` or the default; there is no pulling without one.
fn blob_cache_dir(dir: Option<PathBuf>) -> Result<PathBuf> {
    dir.context("no cache directory: set --cache-dir, WHARF_CACHE_DIR or HOME")
}

async fn registry(command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Push { reference, from, insecure } => {
            let digest = wharf::oci::push(&wharf::app::manifest_path(&from), &reference, insecure).await?;
            println!("Pushed {reference}@{digest}");
        }
        RegistryCommand::Pull { reference, insecure, cache_dir: dir, limits } => {
            let options = RegistryOptions { insecure, cache_dir: blob_cache_dir(dir.or_else(CompileCache::default_dir))?, limits: limits.into() };
            let pulled = wharf::oci::pull(&reference, &options).await?;
            println!("Pulled {reference}@{} ({} components)", pulled.digest, pulled.manifest.component.len());
        }
    }
    Ok(())
}

async fn up(args: UpArgs) -> Result<()> {
    if args.max_instance_reuse_count == 0 || args.max_instance_concurrent_reuse_count == 0 {
        bail!("--max-instance-reuse-count and --max-instance-concurrent-reuse-count must be at least 1");
    }
    let started = std::time::Instant::now();
    let cache_dir = args.cache_dir.clone().or_else(CompileCache::default_dir);
    let options = AppOptions {
        manifest: args.from.clone(),
        runtime_config: args.runtime_config_file.clone(),
        state_dir: args.state_dir.clone(),
        component_ids: args.component_id.clone(),
        component_env: args.env.clone(),
        process_env: std::env::vars().collect(),
        engine: EngineOptions {
            max_instance_memory: args.max_instance_memory,
            max_instances: args.max_instances.saturating_mul(2),
            perf_map: args.perf_map,
        },
        cache_dir: cache_dir.clone(),
        outbound_timeouts: Timeouts {
            connect: seconds("outbound-connect-timeout", args.outbound_connect_timeout)?,
            first_byte: seconds("outbound-first-byte-timeout", args.outbound_first_byte_timeout)?,
        },
    };
    let from = args.from.to_string_lossy();
    // The files of a pulled app are mounted from where the pull wrote them,
    // so that directory lives as long as the app.
    let (app, _pulled_files) = if wharf::oci::is_registry_reference(&from) {
        let registry = RegistryOptions { insecure: args.insecure, cache_dir: blob_cache_dir(cache_dir)?, limits: args.pull_limits.into() };
        let pulled = wharf::oci::pull(&from, &registry).await?;
        tracing::info!("pulled {from}@{}", pulled.digest);
        let origin = ManifestOrigin { label: from.to_string(), base_dir: PathBuf::from("."), default_state_dir: None };
        (tokio::task::block_in_place(|| App::from_manifest(pulled.manifest, &origin, &options))?, Some(pulled.files))
    } else {
        (tokio::task::block_in_place(|| App::load(&options))?, None)
    };
    let app = Arc::new(app);
    let metrics = Arc::new(Metrics::default());
    let request_timeout = seconds("request-timeout", args.request_timeout)?;
    let shutdown_grace = match args.shutdown_grace {
        Some(grace) => {
            let grace = seconds("shutdown-grace", grace)?;
            if grace < request_timeout {
                tracing::warn!("--shutdown-grace {grace:?} is shorter than --request-timeout {request_timeout:?}: requests in flight at shutdown may be cut off");
            }
            grace
        }
        None => request_timeout + Duration::from_secs(1),
    };
    let http_options = HttpOptions {
        policy: InstancePolicy {
            max_reuse: args.max_instance_reuse_count,
            max_concurrent: args.max_instance_concurrent_reuse_count,
            request_timeout,
            idle_timeout: seconds("idle-instance-timeout", args.idle_instance_timeout)?,
        },
        max_request_body: args.max_request_body,
        max_instances: args.max_instances as usize,
        shutdown_grace,
    };
    let trigger = HttpTrigger::new(app.clone(), http_options, metrics.clone(), args.listen)?;
    let shutdown = CancellationToken::new();
    let memory_limit = wharf::memory_budget::cgroup_memory_limit();
    let max_in_flight =
        wharf::memory_budget::instances_that_fit(memory_limit, args.max_instance_memory, wharf::redis_trigger::MAX_IN_FLIGHT);
    if let Some(limit) = memory_limit.filter(|_| !app.manifest.trigger.redis.is_empty()) {
        tracing::info!("memory limit {} MiB, {} MiB per instance: at most {max_in_flight} Redis messages handled at once", limit >> 20, args.max_instance_memory >> 20);
    }
    let redis = wharf::redis_trigger::RedisTrigger::start(app.clone(), metrics.clone(), request_timeout, max_in_flight, shutdown.clone())?;

    if let Some(addr) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for metrics"))?;
        tokio::spawn(wharf::metrics_server::serve(listener, metrics.clone()));
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(app = %app.name, components = app.components.len(), "serving on http://{local} (ready in {:?})", started.elapsed());
    if trigger.has_routes() {
        for trigger_spec in &app.manifest.trigger.http {
            let wharf::manifest::HttpRoute::Route(route) = &trigger_spec.route else { continue };
            let answered_by = match trigger_spec.answer()? {
                HttpAnswer::Component(component) if app.components.contains_key(component) => component.to_string(),
                HttpAnswer::Static(response) => format!("static response {}", response.status_code.unwrap_or(200)),
                HttpAnswer::Component(_) => continue, // not selected with --component-id
            };
            tracing::info!("  http://{local}{} -> {answered_by}", route.trim_end_matches("/..."));
        }
    }
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    // Both triggers stop taking work at the signal and drain side by side.
    let (served, ()) = tokio::join!(trigger.serve(listener, shutdown.cancelled_owned()), redis.stopped());
    served
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn build(from: &std::path::Path) -> Result<()> {
    let path = wharf::app::manifest_path(from);
    let manifest = wharf::manifest::Manifest::load(&path)?;
    let app_dir = wharf::manifest::Manifest::base_dir(&path);
    for (id, component) in &manifest.component {
        let Some(build) = &component.build else {
            println!("{id}: no build command");
            continue;
        };
        // `validate` refused an absolute workdir or one with `..`; a symlink
        // leading out of the app is refused here.
        let workdir = match &build.workdir {
            Some(w) => wharf::confined::inside(&app_dir, &wharf::confined::relative(w)?).with_context(|| format!("{id}: build.workdir"))?,
            None => app_dir.clone(),
        };
        for command in build.command.commands() {
            println!("{id}: {command}");
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&workdir)
                .envs(&build.environment)
                .status()
                .with_context(|| format!("{id}: cannot run `{command}`"))?;
            if !status.success() {
                bail!("{id}: `{command}` failed ({status})");
            }
        }
    }
    Ok(())
}
