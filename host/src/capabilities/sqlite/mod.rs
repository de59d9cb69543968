//! SQLite databases, as Spin gives them to guests: `fermyon:spin/sqlite@2.0.0`
//! ([`p2`]) and `spin:sqlite/sqlite@3.0.0` ([`spin_v3`]), both synchronous in
//! WIT and imported by WASIp2 components, and `spin:sqlite/sqlite@3.1.0`
//! ([`p3`], with `async` twins, for WASIp3 components), over one core here.
//!
//! A component opens only the labels in its `sqlite_databases`; anything else
//! is `access-denied`, whether or not the label exists. `default` is a file in
//! the state directory (in memory without one); other labels come from
//! `[sqlite_database.<label>]` in the runtime config.
//!
//! Every `open` is a connection of its own, held by the instance: `changes`
//! and `last-insert-rowid` see only that connection's statements. Files are in
//! WAL mode and every connection waits up to [`BUSY_TIMEOUT`] for another's
//! write lock, so instances share a file safely; an in-memory database is
//! SQLite's `memdb` VFS under a process-unique name, which its connections
//! share with the same locking.
//!
//! Statements run on the blocking thread pool, never on the async runtime.
//! A statement whose caller goes away (the request passed its deadline and
//! its instance was dropped) is stopped at its next progress check.

mod p2;
mod p3;
mod spin_v3;

use anyhow::{Context, Result};
use rusqlite::OpenFlags;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{Value, ValueRef};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The most a query may return, counted over all its values, and the longest
/// a single value may be (SQLite's own limit is 1 GB). Spin's limit is the same.
const MAX_RESULT_BYTES: usize = 128 << 20;

/// Connections one instance may hold open at once (Spin's limit is the same):
/// each is a file descriptor or two on the host.
const MAX_CONNECTIONS: usize = 256;

/// SQLite virtual-machine steps between two checks whether the caller is gone.
const PROGRESS_STEPS: i32 = 1000;

/// Why a call failed; each version maps it to its own `error`.
#[derive(Debug, PartialEq)]
pub enum Error {
    NoSuchDatabase,
    AccessDenied,
    DatabaseFull,
    Io(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Error::DatabaseFull,
            _ => Error::Io(e.to_string()),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NoSuchDatabase => f.write_str("no such database"),
            Error::AccessDenied => f.write_str("access denied"),
            Error::DatabaseFull => f.write_str("database full"),
            Error::Io(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

/// What a statement returned: its column names and its rows.
#[derive(Debug, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// One database of the app, shared by every instance that opens it.
pub struct Database {
    location: Location,
}

enum Location {
    File(PathBuf),
    /// A `memdb` database, which lives while some connection to it is open:
    /// the first one, kept here, holds it for the app's lifetime.
    Memory { name: String, _keep: Mutex<rusqlite::Connection> },
}

impl Database {
    /// The database in the file at `path`, created (with its directory) if
    /// missing, and switched to WAL mode.
    pub fn file(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let database = Self { location: Location::File(path.to_path_buf()) };
        let conn = database.connect().with_context(|| format!("cannot open SQLite database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .with_context(|| format!("cannot switch SQLite database {} to WAL mode", path.display()))?;
        Ok(database)
    }

    /// A database in memory, gone with the app.
    pub fn in_memory() -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // memdb shares a database among the connections that open the same
        // name starting with `/`; the counter keeps apps apart.
        let name = format!("/wharf-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let keep = open_memdb(&name).context("cannot create an in-memory SQLite database")?;
        Ok(Self { location: Location::Memory { name, _keep: Mutex::new(keep) } })
    }

    /// A new connection, set up for a guest.
    fn connect(&self) -> rusqlite::Result<rusqlite::Connection> {
        let conn = match &self.location {
            Location::File(path) => rusqlite::Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
            Location::Memory { name, .. } => open_memdb(name)?,
        };
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_RESULT_BYTES as i32)?;
        conn.authorizer(Some(deny_attaching_files));
        Ok(conn)
    }
}

fn open_memdb(name: &str) -> rusqlite::Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags_and_vfs(
        name,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        c"memdb",
    )
}

/// A guest may attach a fresh temporary or in-memory database, as in Spin,
/// but no file: `ATTACH` would otherwise read or write any path the host can.
fn deny_attaching_files(context: AuthContext<'_>) -> Authorization {
    match context.action {
        AuthAction::Attach { filename } if !matches!(filename, "" | ":memory:") => Authorization::Deny,
        _ => Authorization::Allow,
    }
}

/// The databases of the app, by label.
#[derive(Clone, Default)]
pub struct Databases {
    by_label: Arc<BTreeMap<String, Arc<Database>>>,
}

impl Databases {
    pub fn new(by_label: BTreeMap<String, Arc<Database>>) -> Self {
        Self { by_label: Arc::new(by_label) }
    }

    /// Checks that every label a component lists is a database, at load time.
    pub fn check_labels(&self, component: &str, labels: &[String]) -> Result<()> {
        for label in labels {
            if !self.by_label.contains_key(label) {
                anyhow::bail!(
                    "component `{component}`: sqlite_databases lists `{label}`, which is not a database (known: {}); define it in runtime-config.toml as [sqlite_database.{label}]",
                    self.by_label.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                );
            }
        }
        Ok(())
    }
}

/// Per-instance SQLite state: the databases this component may open.
#[derive(Clone)]
pub struct SqliteAccess {
    databases: Databases,
    allowed: Arc<HashSet<String>>,
    /// One clone per open connection, to count them.
    open_connections: Arc<()>,
}

impl SqliteAccess {
    pub fn new(databases: Databases, allowed: Arc<HashSet<String>>) -> Self {
        Self { databases, allowed, open_connections: Arc::new(()) }
    }

    /// A new connection to `label`. Labels not granted to the component are
    /// `access-denied` even when they exist, so a component cannot probe for
    /// other components' databases.
    pub async fn open(&self, label: &str) -> Result<Connection, Error> {
        if !self.allowed.contains(label) {
            return Err(Error::AccessDenied);
        }
        let database = self.databases.by_label.get(label).ok_or(Error::NoSuchDatabase)?.clone();
        if Arc::strong_count(&self.open_connections) > MAX_CONNECTIONS {
            return Err(Error::Io(format!("too many connections open (at most {MAX_CONNECTIONS} per instance)")));
        }
        let conn = tokio::task::spawn_blocking(move || database.connect())
            .await
            .map_err(|e| Error::Io(e.to_string()))??;
        Ok(Connection { conn: Arc::new(Mutex::new(conn)), _counted: self.open_connections.clone() })
    }
}

/// A connection a guest opened (the `connection` resource). A clone is the
/// same connection (an `async` call holds one while it runs).
#[derive(Clone)]
pub struct Connection {
    conn: Arc<Mutex<rusqlite::Connection>>,
    _counted: Arc<()>,
}

impl Connection {
    /// Runs one statement with its parameters and returns every row.
    pub async fn execute(&self, statement: String, parameters: Vec<Value>) -> Result<QueryResult, Error> {
        self.blocking(move |conn| query(conn, &statement, parameters)).await?
    }

    /// Rows changed by the connection's last INSERT, UPDATE or DELETE.
    pub async fn changes(&self) -> Result<u64, Error> {
        self.blocking(|conn| conn.changes()).await
    }

    /// The rowid of the connection's last successful INSERT (0 before any).
    pub async fn last_insert_rowid(&self) -> Result<i64, Error> {
        self.blocking(|conn| conn.last_insert_rowid()).await
    }

    /// Runs `work` on the blocking pool. If this future is dropped first, a
    /// statement `work` is running is stopped at its next progress check (or
    /// never starts): a check rather than `sqlite3_interrupt`, which misses a
    /// statement that has not started yet when it is called.
    async fn blocking<R: Send + 'static>(&self, work: impl FnOnce(&rusqlite::Connection) -> R + Send + 'static) -> Result<R, Error> {
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let cancelled = cancel.0.clone();
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            conn.progress_handler(PROGRESS_STEPS, Some(move || cancelled.load(Ordering::Relaxed)));
            let result = work(&conn);
            conn.progress_handler(0, None::<fn() -> bool>);
            result
        })
        .await
        .map_err(|e| Error::Io(e.to_string()))
    }
}

/// Tells a statement running for a call that the call is gone.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn query(conn: &rusqlite::Connection, statement: &str, parameters: Vec<Value>) -> Result<QueryResult, Error> {
    if is_vacuum_into(statement) {
        return Err(Error::Io("VACUUM INTO would write a file on the host and is not allowed".into()));
    }
    let mut statement = conn.prepare_cached(statement)?;
    let columns: Vec<String> = statement.column_names().into_iter().map(String::from).collect();
    let mut rows = statement.query(rusqlite::params_from_iter(parameters))?;
    let mut result = Vec::new();
    let mut bytes = 0;
    while let Some(row) = rows.next()? {
        let values = (0..columns.len())
            .map(|i| {
                let value = owned(row.get_ref(i)?).map_err(|()| {
                    Error::Io(format!("column `{}` holds text that is not UTF-8; CAST it AS BLOB to read it", columns[i]))
                })?;
                bytes += size_of::<Value>() + heap_bytes(&value);
                Ok(value)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if bytes > MAX_RESULT_BYTES {
            return Err(Error::Io(format!("the query's result is larger than {MAX_RESULT_BYTES} bytes")));
        }
        result.push(values);
    }
    Ok(QueryResult { columns, rows: result })
}

/// Whether `sql` is a `VACUUM ... INTO`, which writes a new database file at
/// any path the host can. SQLite asks the authorizer nothing about it, so
/// the statement's words are read: the first, after comments, is `VACUUM`
/// and another is `INTO` (anywhere, even quoted: refusing too much is safe).
fn is_vacuum_into(sql: &str) -> bool {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(line_comment) = rest.strip_prefix("--") {
            rest = line_comment.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(block_comment) = rest.strip_prefix("/*") {
            rest = block_comment.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    let mut words = rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty());
    words.next().is_some_and(|first| first.eq_ignore_ascii_case("VACUUM")) && words.any(|w| w.eq_ignore_ascii_case("INTO"))
}

/// A value as the guest gets it; SQLite text that is not UTF-8 has no
/// `string` to become (rusqlite's own conversion panics on it).
fn owned(value: ValueRef<'_>) -> Result<Value, ()> {
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(String::from_utf8(t.to_vec()).map_err(drop)?),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    })
}

fn heap_bytes(value: &Value) -> usize {
    match value {
        Value::Text(t) => t.len(),
        Value::Blob(b) => b.len(),
        Value::Null | Value::Integer(_) | Value::Real(_) => 0,
    }
}

/// A version's `connection` over [`Connection`]: the conversions between
/// these types and the version's generated ones, which have the same shape
/// in every version, `open`, `execute` and `drop`, and the version's own
/// functions `$extra` (which see the `wit` module).
macro_rules! connection_in_wit {
    ($wit:path, { $($extra:tt)* }) => {
        use $wit as wit;
        use $crate::capabilities::sqlite::{Connection, Error, QueryResult};
        use $crate::state::InstanceState;
        use rusqlite::types::Value;
        use wasmtime::component::Resource;

        type Outcome<R> = wasmtime::Result<Result<R, wit::Error>>;

        impl From<Error> for wit::Error {
            fn from(e: Error) -> Self {
                match e {
                    Error::NoSuchDatabase => wit::Error::NoSuchDatabase,
                    Error::AccessDenied => wit::Error::AccessDenied,
                    Error::DatabaseFull => wit::Error::DatabaseFull,
                    Error::Io(message) => wit::Error::Io(message),
                }
            }
        }

        fn from_wit(value: wit::Value) -> Value {
            match value {
                wit::Value::Integer(i) => Value::Integer(i),
                wit::Value::Real(r) => Value::Real(r),
                wit::Value::Text(t) => Value::Text(t),
                wit::Value::Blob(b) => Value::Blob(b),
                wit::Value::Null => Value::Null,
            }
        }

        fn to_wit(value: Value) -> wit::Value {
            match value {
                Value::Integer(i) => wit::Value::Integer(i),
                Value::Real(r) => wit::Value::Real(r),
                Value::Text(t) => wit::Value::Text(t),
                Value::Blob(b) => wit::Value::Blob(b),
                Value::Null => wit::Value::Null,
            }
        }

        impl From<QueryResult> for wit::QueryResult {
            fn from(result: QueryResult) -> Self {
                wit::QueryResult {
                    columns: result.columns,
                    rows: result
                        .rows
                        .into_iter()
                        .map(|values| wit::RowResult { values: values.into_iter().map(to_wit).collect() })
                        .collect(),
                }
            }
        }

        impl wit::HostConnection for InstanceState {
            async fn open(&mut self, database: String) -> Outcome<Resource<Connection>> {
                match self.sqlite.open(&database).await {
                    Ok(connection) => Ok(Ok(self.table.push(connection)?)),
                    Err(e) => Ok(Err(e.into())),
                }
            }

            async fn execute(&mut self, self_: Resource<Connection>, statement: String, parameters: Vec<wit::Value>) -> Outcome<wit::QueryResult> {
                let parameters = parameters.into_iter().map(from_wit).collect();
                let result = self.table.get(&self_)?.execute(statement, parameters).await;
                Ok(result.map(Into::into).map_err(Into::into))
            }

            async fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
                self.table.delete(rep)?;
                Ok(())
            }

            $($extra)*
        }

        impl wit::Host for InstanceState {}
    };
}
use connection_in_wit;

#[cfg(test)]
mod tests {
    use super::*;

    fn access(database: Database, allowed: &[&str]) -> SqliteAccess {
        let databases = Databases::new(BTreeMap::from([("db".to_string(), Arc::new(database))]));
        SqliteAccess::new(databases, Arc::new(allowed.iter().map(|s| s.to_string()).collect()))
    }

    async fn exec(conn: &Connection, sql: &str, parameters: Vec<Value>) -> Result<QueryResult, Error> {
        conn.execute(sql.to_string(), parameters).await
    }

    #[tokio::test]
    async fn values_keep_their_types_and_connections_of_a_memory_database_share_it() {
        let access = access(Database::in_memory().unwrap(), &["db"]);
        let writer = access.open("db").await.unwrap();
        exec(&writer, "CREATE TABLE t (v)", vec![]).await.unwrap();
        let values = vec![Value::Integer(-7), Value::Real(2.0), Value::Text("é".into()), Value::Blob(vec![0, 255]), Value::Null];
        for value in &values {
            exec(&writer, "INSERT INTO t VALUES (?1)", vec![value.clone()]).await.unwrap();
        }
        assert_eq!(writer.changes().await.unwrap(), 1);
        assert_eq!(writer.last_insert_rowid().await.unwrap(), 5);
        let reader = access.open("db").await.unwrap();
        let result = exec(&reader, "SELECT v AS value FROM t ORDER BY rowid", vec![]).await.unwrap();
        assert_eq!(result.columns, ["value"]);
        assert_eq!(result.rows, values.into_iter().map(|v| vec![v]).collect::<Vec<_>>());
        assert_eq!(reader.last_insert_rowid().await.unwrap(), 0, "per connection");
    }

    #[tokio::test]
    async fn labels_not_granted_are_denied_and_unknown_granted_ones_missing() {
        let access = access(Database::in_memory().unwrap(), &["db", "ghost"]);
        assert_eq!(access.open("ghost").await.err(), Some(Error::NoSuchDatabase));
        let denied = self::access(Database::in_memory().unwrap(), &[]);
        assert_eq!(denied.open("db").await.err(), Some(Error::AccessDenied));
    }

    #[tokio::test]
    async fn files_cannot_be_attached_or_written_by_vacuum_into() {
        let dir = tempfile::tempdir().unwrap();
        let access = access(Database::file(&dir.path().join("db.sqlite")).unwrap(), &["db"]);
        let conn = access.open("db").await.unwrap();
        exec(&conn, "CREATE TABLE t (v)", vec![]).await.unwrap();
        let elsewhere = dir.path().join("other.sqlite");
        let elsewhere = elsewhere.to_str().unwrap();
        let attach = format!("ATTACH '{elsewhere}' AS other");
        assert!(matches!(exec(&conn, &attach, vec![]).await, Err(Error::Io(m)) if m.contains("not authorized")), "{attach}");
        for vacuum in [format!("VACUUM INTO '{elsewhere}'"), format!(" -- x\n/* y */ vacuum main\tinto '{elsewhere}'")] {
            assert!(matches!(exec(&conn, &vacuum, vec![]).await, Err(Error::Io(m)) if m.contains("VACUUM INTO")), "{vacuum}");
        }
        assert!(!dir.path().join("other.sqlite").exists());
        exec(&conn, "ATTACH ':memory:' AS scratch", vec![]).await.unwrap();
        exec(&conn, "VACUUM", vec![]).await.unwrap();
    }

    #[tokio::test]
    async fn text_that_is_not_utf8_is_an_error_not_a_panic() {
        let access = access(Database::in_memory().unwrap(), &["db"]);
        let conn = access.open("db").await.unwrap();
        let err = exec(&conn, "SELECT CAST(x'ff' AS TEXT) AS broken", vec![]).await.unwrap_err();
        assert!(matches!(&err, Error::Io(m) if m.contains("`broken`")), "{err:?}");
    }

    #[tokio::test]
    async fn a_result_past_the_limit_is_refused() {
        let access = access(Database::in_memory().unwrap(), &["db"]);
        let conn = access.open("db").await.unwrap();
        let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) SELECT zeroblob(1 << 20) FROM n";
        let err = exec(&conn, sql, vec![]).await.unwrap_err();
        assert!(matches!(&err, Error::Io(m) if m.contains("larger than")), "{err:?}");
    }

    #[tokio::test]
    async fn a_dropped_call_stops_its_statement() {
        let access = access(Database::in_memory().unwrap(), &["db"]);
        let conn = access.open("db").await.unwrap();
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
        let call = exec(&conn, endless, vec![]);
        assert!(tokio::time::timeout(Duration::from_millis(200), call).await.is_err());
        // The connection is free again once the statement has stopped.
        let after = tokio::time::timeout(Duration::from_secs(5), exec(&conn, "SELECT 1", vec![])).await;
        assert_eq!(after.expect("the endless statement was stopped").unwrap().rows, [[Value::Integer(1)]]);
    }

    #[tokio::test]
    async fn each_instance_may_hold_a_bounded_number_of_connections() {
        let access = access(Database::in_memory().unwrap(), &["db"]);
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(access.open("db").await.unwrap());
        }
        assert!(matches!(access.open("db").await, Err(Error::Io(m)) if m.contains("too many")));
        held.pop();
        access.open("db").await.unwrap();
    }
}
