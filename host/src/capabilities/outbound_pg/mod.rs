//! Outbound PostgreSQL: `spin:postgres/postgres@4.0.0` ([`v4`]), `@3.0.0`
//! ([`v3`]) and `fermyon:spin/postgres@2.0.0` ([`v2`]), all synchronous in
//! WIT (WASIp2 guests), and `@4.2.0` ([`p3`], WASIp3 guests: a connection
//! builder with CA roots of the guest's own, and async twins whose
//! `query-async` streams the rows). The calls are those of 4.0.0, whose
//! types are the model here; the other versions convert to and from them
//! as Spin does.
//!
//! As Spin's factor-outbound-pg, so apps behave the same on both hosts:
//! - `open` parses the connection string (`key=value` or `postgres://` URL)
//!   and checks every host and port against `allowed_outbound_hosts`
//!   (scheme `postgres`), then connects at once.
//! - Each component has its own pools, one per connection string; a
//!   `connection` keeps one session for its whole life (a guest may rely on
//!   session state between calls) and gives it back on drop, reset.
//! - TLS as tokio-postgres' `sslmode` says (`prefer` by default), verified
//!   against the system's roots.
//!
//! Where Spin would be unsafe or lose information, wharf is stricter or
//! says more: `hostaddr=` entries are checked too (Spin checks only
//! `host=`, so a guest could reach any address), `timestamptz` columns are
//! read as UTC date-times (Spin fails the whole query), and a query's
//! columns are known even when it returns no rows.

use crate::allowed_hosts::AllowedHosts;
use crate::bindings::p2::spin::postgres4_0_0::postgres as model;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use futures::{StreamExt, pin_mut};
use model::{Column, DbError, Error, ParameterValue, QueryError, RowSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::Host;
use tokio_postgres::types::ToSql;

mod p3;
mod types;
mod v2;
mod v3;
mod v4;
mod wire;

/// Sessions one component may hold per connection string, as Spin allows.
const MAX_SESSIONS_PER_ADDRESS: usize = 64;
/// Sessions one component may hold at once over all its connection strings
/// (and CA roots): without it, a guest naming many strings for one server
/// (another user, database or option each) would hold 64 sessions per
/// string on it.
const MAX_SESSIONS_PER_COMPONENT: usize = 64;
/// Connection strings whose pools a component keeps; past it the least
/// recently used pool is let go (its sessions close once returned).
const MAX_POOLS: usize = 16;
/// How long `open` waits for a session: to connect, or for one of the
/// component's sessions to come back when all are in use.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// What one query may hold in the host before the guest takes it, as Spin.
const MAX_RESULT_BYTES: usize = 128 << 20;

/// One component's pools, shared by its instances.
pub struct PgPools {
    pools: std::sync::Mutex<Vec<(String, Pool)>>,
    /// One permit per session the component holds, whatever its pool.
    sessions: Arc<tokio::sync::Semaphore>,
}

impl Default for PgPools {
    fn default() -> Self {
        Self { pools: Default::default(), sessions: Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS_PER_COMPONENT)) }
    }
}

impl PgPools {
    /// The pool for `address` with TLS trusting `ca_roots` (PEM) besides the
    /// system's roots, made on first use; the most recently used pool goes
    /// first.
    fn pool(&self, address: &str, ca_roots: &[String], config: tokio_postgres::Config) -> Result<Pool, Error> {
        let key = std::iter::once(address).chain(ca_roots.iter().map(String::as_str)).collect::<Vec<_>>().join("\n");
        let mut pools = self.pools.lock().expect("not poisoned");
        if let Some(at) = pools.iter().position(|(known, _)| *known == key) {
            let entry = pools.remove(at);
            let pool = entry.1.clone();
            pools.insert(0, entry);
            return Ok(pool);
        }
        let tls = tls_config(ca_roots)?;
        // deadpool's `Clean` reset runs inside a transaction the guest left
        // open, so the next instance would write into it: roll back first.
        // (A statement made with SQL PREPARE survives; tokio-postgres keeps
        // statements of its own on the session, so DEALLOCATE ALL is out.)
        let reset = format!("ROLLBACK; {}", RecyclingMethod::Clean.query().unwrap_or_default());
        let manager = Manager::from_connect(
            config,
            wire::LimitedConnect { tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls) },
            ManagerConfig { recycling_method: RecyclingMethod::Custom(reset) },
        );
        let pool = Pool::builder(manager)
            .max_size(MAX_SESSIONS_PER_ADDRESS)
            .wait_timeout(Some(OPEN_TIMEOUT))
            .create_timeout(Some(OPEN_TIMEOUT))
            .recycle_timeout(Some(OPEN_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Other(e.to_string()))?;
        pools.insert(0, (key, pool.clone()));
        pools.truncate(MAX_POOLS);
        Ok(pool)
    }
}

/// TLS verified against the system's roots and `ca_roots`, PEM
/// certificates a guest gave (`connection-builder.set-ca-root`).
fn tls_config(ca_roots: &[String]) -> Result<rustls::ClientConfig, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    if ca_roots.is_empty() {
        return <rustls::ClientConfig as rustls_platform_verifier::ConfigVerifierExt>::with_platform_verifier()
            .map_err(|e| Error::Other(format!("TLS roots: {e}")));
    }
    let mut extra = Vec::new();
    for pem in ca_roots {
        for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            extra.push(certificate.map_err(|e| Error::BadParameter(format!("CA root: {e}")))?);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
        .map_err(|e| Error::Other(format!("TLS roots: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Other(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

/// Checks that `pem` holds at least one certificate and nothing else that
/// fails to parse, when the guest gives it (`set-ca-root`), so a bad root
/// is an error there rather than at `build`.
pub fn check_ca_root(pem: &str) -> Result<(), Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>();
    match certificates {
        Ok(certificates) if !certificates.is_empty() => Ok(()),
        Ok(_) => Err(Error::BadParameter("CA root: no PEM certificate".into())),
        Err(e) => Err(Error::BadParameter(format!("CA root: {e}"))),
    }
}

/// Per-instance PostgreSQL access: the component's policy and pools.
#[derive(Clone)]
pub struct PgAccess {
    pub allowed: Arc<AllowedHosts>,
    pub pools: Arc<PgPools>,
}

impl PgAccess {
    /// The parsed connection string, if every address it names is allowed.
    fn check(&self, address: &str) -> Result<tokio_postgres::Config, Error> {
        let mut config: tokio_postgres::Config = address.parse().map_err(|e| Error::ConnectionFailed(format!("{e}")))?;
        let ports = config.get_ports().to_vec();
        let port_of = |i: usize| ports.get(i).or(if ports.len() == 1 { ports.first() } else { None }).copied();
        let not_permitted = |host: &str, port: Option<u16>| {
            let shown = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
            let shown = port.map_or(shown.clone(), |port| format!("{shown}:{port}"));
            Error::ConnectionFailed(format!("address postgres://{shown} is not permitted"))
        };
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(Error::ConnectionFailed("the connection string names no host".into()));
        }
        for (i, host) in config.get_hosts().iter().enumerate() {
            match host {
                Host::Tcp(name) if self.allowed.allows("postgres", name, port_of(i).unwrap_or(5432)) => {}
                Host::Tcp(name) => return Err(not_permitted(name, port_of(i))),
                Host::Unix(_) => return Err(Error::ConnectionFailed("Unix sockets are not supported on WebAssembly".into())),
            }
        }
        // tokio-postgres connects to `hostaddr` rather than resolving
        // `host` when both are given: the address reached is what counts.
        for (i, ip) in config.get_hostaddrs().iter().enumerate() {
            let ip = ip.to_string();
            if !self.allowed.allows("postgres", &ip, port_of(i).unwrap_or(5432)) {
                return Err(not_permitted(&ip, port_of(i)));
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(OPEN_TIMEOUT);
        }
        Ok(config)
    }

    /// A session on `address`, if the component may reach it.
    pub async fn open(&self, address: &str) -> Result<Connection, Error> {
        self.open_trusting(address, &[]).await
    }

    /// A session on `address` whose TLS also trusts `ca_roots` (PEM).
    pub async fn open_trusting(&self, address: &str, ca_roots: &[String]) -> Result<Connection, Error> {
        let config = self.check(address)?;
        let pool = self.pools.pool(address, ca_roots, config)?;
        // deadpool bounds each step (wait, recycle, create) but not their
        // sum; nor does it know of the component's other pools.
        let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
            let permit = self.pools.sessions.clone().acquire_owned().await.expect("the semaphore is never closed");
            (permit, pool.get().await)
        })
        .await;
        let Ok((permit, session)) = opened else {
            return Err(Error::ConnectionFailed(if self.pools.sessions.available_permits() == 0 {
                "too many connections".into()
            } else {
                format!("no session within {OPEN_TIMEOUT:?}")
            }));
        };
        match session {
            Ok(session) => Ok(Connection { session: Arc::new(session), _permit: Arc::new(permit) }),
            Err(PoolError::Timeout(_)) if pool.status().available == 0 && pool.status().size >= MAX_SESSIONS_PER_ADDRESS => {
                Err(Error::ConnectionFailed("too many connections".into()))
            }
            Err(e) => Err(Error::ConnectionFailed(error_chain(&e))),
        }
    }
}

impl crate::state::InstanceState {
    /// Opens `address` (trusting `ca_roots` besides the system's roots) for
    /// the guest and keeps the connection in its table: `open` of every
    /// version, which converts the error to its own.
    async fn open_postgres(&mut self, address: &str, ca_roots: &[String]) -> wasmtime::Result<Result<wasmtime::component::Resource<Connection>, Error>> {
        match self.postgres.clone().open_trusting(address, ca_roots).await {
            Ok(connection) => Ok(Ok(self.table.push(connection)?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

/// An error and its causes, one after the other.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A failed query as the guest sees it: the server's error with its fields,
/// or the driver's.
fn query_failed(e: tokio_postgres::Error) -> Error {
    let Some(db) = e.as_db_error() else {
        return Error::QueryFailed(QueryError::Text(format!("{e:?}")));
    };
    let fields = [
        ("column", db.column()),
        ("constraint", db.constraint()),
        ("routine", db.routine()),
        ("hint", db.hint()),
        ("table", db.table()),
        ("datatype", db.datatype()),
        ("schema", db.schema()),
        ("file", db.file()),
        ("where_", db.where_()),
    ];
    let mut extras: Vec<(String, String)> =
        fields.into_iter().filter_map(|(name, value)| value.map(|value| (name.to_string(), value.to_string()))).collect();
    if let Some(line) = db.line() {
        extras.push(("line".into(), line.to_string()));
    }
    Error::QueryFailed(QueryError::DbError(DbError {
        as_text: format!("{e:?}"),
        severity: db.severity().to_string(),
        code: db.code().code().to_string(),
        message: db.message().to_string(),
        detail: db.detail().map(str::to_string),
        extras,
    }))
}

/// A connection being configured (`connection-builder`, 4.1.0 on).
pub struct ConnectionBuilder {
    pub address: String,
    /// PEM certificates trusted besides the system's roots.
    pub ca_roots: Vec<String>,
}

/// An open session (the `connection` resource of every version).
#[derive(Clone)]
pub struct Connection {
    session: Arc<Object>,
    /// The component's count of sessions, given back with the last clone.
    _permit: Arc<tokio::sync::OwnedSemaphorePermit>,
}

/// A statement's parameters as the driver takes them.
type Parameters = Vec<Box<dyn ToSql + Send + Sync>>;

impl Connection {
    /// Runs `statement`; the number of rows it changed. A parameter that
    /// does not convert is `value-conversion-failed`, as Spin has it.
    pub fn execute(&self, statement: String, params: Vec<ParameterValue>) -> impl Future<Output = Result<u64, Error>> + use<> {
        let session = self.session.clone();
        async move {
            let params = types::parameters(params).map_err(Error::ValueConversionFailed)?;
            session.execute_raw(&statement, borrowed(&params)).await.map_err(query_failed)
        }
    }

    /// Runs `statement`; its columns and rows. A parameter that does not
    /// convert is `bad-parameter`, as Spin has it.
    pub fn query(&self, statement: String, params: Vec<ParameterValue>) -> impl Future<Output = Result<RowSet, Error>> + use<> {
        let session = self.session.clone();
        async move {
            let params = types::parameters(params).map_err(Error::BadParameter)?;
            let prepared = session.prepare(&statement).await.map_err(query_failed)?;
            let columns: Vec<Column> = prepared
                .columns()
                .iter()
                .map(|column| Column { name: column.name().to_string(), data_type: types::data_type(column.type_()) })
                .collect();
            let rows = session.query_raw(&prepared, borrowed(&params)).await.map_err(query_failed)?;
            pin_mut!(rows);
            let mut collected = Vec::new();
            let mut size = 0;
            while let Some(row) = rows.next().await {
                let row = row.map_err(query_failed)?;
                let values = types::row_values(&row).map_err(|e| Error::QueryFailed(QueryError::Text(format!("{e:?}"))))?;
                // A row costs its list even with no columns (SELECT FROM
                // generate_series(...) would otherwise be free).
                size += std::mem::size_of::<Vec<model::DbValue>>() + values.iter().map(types::size_of).sum::<usize>();
                if size > MAX_RESULT_BYTES {
                    return Err(Error::QueryFailed(QueryError::Text(format!("query result exceeds limit of {MAX_RESULT_BYTES} bytes"))));
                }
                collected.push(values);
            }
            Ok(RowSet { columns, rows: collected })
        }
    }
}

fn borrowed(params: &Parameters) -> impl ExactSizeIterator<Item = &(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync))
}

impl QueryError {
    /// The text older versions carry in place of the structured error.
    fn into_text(self) -> String {
        match self {
            QueryError::Text(text) => text,
            QueryError::DbError(db) => db.as_text,
        }
    }
}
