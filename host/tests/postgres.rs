//! Outbound PostgreSQL (`spin:postgres@4.0.0`, `@3.0.0`,
//! `fermyon:spin/postgres@2.0.0`) against a real PostgreSQL with password
//! authentication, started by each test; the WASIp2 probe guest runs the
//! statements and answers what the interface returned (`Debug` text).

mod common;
use common::*;
use serde_json::{Value, json};

const PASSWORD: &str = "pg-test-password";

/// The probe granted `allowed` (besides nothing), started.
fn granted(pg: &Postgres) -> (tempfile::TempDir, Host) {
    start_probe_p2(&[format!("postgres://127.0.0.1:{}", pg.port)])
}

/// Runs `statements` (`{"sql", "params", "execute"}` objects) on one
/// connection to `address` through interface `version`.
fn run(host: &Host, version: u8, address: &str, statements: Value) -> Reply {
    let body = json!({ "address": address, "statements": statements }).to_string();
    request("POST", &host.url(&format!("/pg/{version}")), &[], Some(body.as_bytes()))
}

fn lines(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body.lines().map(str::to_string).collect()
}

#[test]
fn values_of_every_type_round_trip_through_version_4() {
    let pg = Postgres::start(PASSWORD);
    let (_dir, host) = granted(&pg);
    let reply = run(
        &host,
        4,
        &pg.address(PASSWORD),
        json!([
            {"sql": "CREATE TABLE t (i2 int2, i4 int4, i8 int8, f8 float8, s text, c char(5), b bytea, d date, tm time, dt timestamp, \
                     ts timestamptz, u uuid, j jsonb, n numeric, r int4range, a int4[], sa text[], iv interval, flag bool, other inet)", "execute": true},
            {"sql": "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, '10.0.0.1')",
             "execute": true,
             "params": [{"int16": -2}, {"int32": 40000}, {"int64": 5000000000i64}, {"float64": 1.5}, {"str": "héllo"}, {"str": "ab"},
                        {"binary": [0, 255]}, {"date": [2024, 2, 29]}, {"time": [13, 14, 15, 16000000]},
                        {"datetime": [1999, 12, 31, 23, 59, 58, 1000]}, {"timestamp": 86400},
                        {"uuid": "fedcba98-fedc-fedc-fedc-fedcba987654"}, {"jsonb": {"k": [1, null]}}, {"decimal": "12.50"},
                        {"range_int32": [[1, "exclusive"], [40, "inclusive"]]}, {"array_int32": [1, null, 3]},
                        {"array_str": ["x", null]}, {"interval": [1500000, 2, 14]}, {"bool": true}]},
            {"sql": "SELECT * FROM t"},
            {"sql": "SELECT i4 FROM t WHERE false"},
        ]),
    );
    let lines = lines(&reply);
    assert_eq!(lines[0], "Ok(0)");
    assert_eq!(lines[1], "Ok(1)");
    let row = &lines[2];
    for expected in [
        "Int16(-2)",
        "Int32(40000)",
        "Int64(5000000000)",
        "Floating64(1.5)",
        "Str(\"héllo\")",
        // char(n) keeps its padding, as PostgreSQL returns it.
        "Str(\"ab   \")",
        "Binary([0, 255])",
        "Date((2024, 2, 29))",
        "Time((13, 14, 15, 16000000))",
        // PostgreSQL keeps microseconds.
        "Datetime((1999, 12, 31, 23, 59, 58, 1000))",
        // timestamptz reads as a UTC date-time (Spin fails the query here).
        "Datetime((1970, 1, 2, 0, 0, 0, 0))",
        "Uuid(\"fedcba98-fedc-fedc-fedc-fedcba987654\")",
        "Jsonb([123, 34, 107, 34, 58, 91, 49, 44, 110, 117, 108, 108, 93, 125])",
        "Decimal(\"12.50\")",
        // PostgreSQL normalises (1,40] to [2,41).
        "RangeInt32((Some((2, RangeBoundKind::Inclusive)), Some((41, RangeBoundKind::Exclusive))))",
        "ArrayInt32([Some(1), None, Some(3)])",
        "ArrayStr([Some(\"x\"), None])",
        "Interval(Interval { micros: 1500000, days: 2, months: 14 })",
        "Boolean(true)",
        // inet is not modelled: its binary form, typed by name.
        "Unsupported([2, 32, 0, 4, 10, 0, 0, 1])",
        "data-type: DbDataType::Other(\"inet\")",
        "data-type: DbDataType::RangeInt32",
    ] {
        assert!(row.contains(expected), "{expected} not in {row}");
    }
    // No rows: the columns are still known.
    assert!(lines[3].starts_with("Ok(RowSet { columns: [Column { name: \"i4\", data-type: DbDataType::Int32 }], rows: [] })"), "{}", lines[3]);
}

#[test]
fn older_versions_see_what_they_model_and_refuse_unsigned_integers() {
    let pg = Postgres::start(PASSWORD);
    pg.psql("CREATE TABLE t (i int4, d date, u uuid); INSERT INTO t VALUES (7, '2024-01-02', gen_random_uuid())").unwrap();
    let (_dir, host) = granted(&pg);
    let select = json!([{"sql": "SELECT i, d, u FROM t WHERE i = $1", "params": [{"int32": 7}]}]);
    let v3 = lines(&run(&host, 3, &pg.address(PASSWORD), select.clone()));
    assert!(v3[0].contains("rows: [[DbValue::Int32(7), DbValue::Date((2024, 1, 2)), DbValue::Unsupported]]"), "{}", v3[0]);
    assert!(v3[0].contains("data-type: DbDataType::Other"), "{}", v3[0]);
    let v2 = lines(&run(&host, 2, &pg.address(PASSWORD), select));
    assert!(v2[0].contains("rows: [[DbValue::Int32(7), DbValue::Unsupported, DbValue::Unsupported]]"), "{}", v2[0]);

    let unsigned = lines(&run(&host, 2, &pg.address(PASSWORD), json!([{"sql": "SELECT $1::int8", "params": [{"uint32": 1}]}])));
    assert_eq!(unsigned[0], "Err(Error::ValueConversionFailed(\"Postgres does not support unsigned integers\"))");
    // A query error is text on the older versions, structured on 4.
    let missing = json!([{"sql": "SELECT * FROM missing"}]);
    let v3 = lines(&run(&host, 3, &pg.address(PASSWORD), missing.clone()));
    assert!(v3[0].starts_with("Err(Error::QueryFailed(\"") && v3[0].contains("42P01"), "{}", v3[0]);
    let v4 = lines(&run(&host, 4, &pg.address(PASSWORD), missing));
    assert!(v4[0].contains("QueryError::DbError(DbError {") && v4[0].contains("code: \"42P01\""), "{}", v4[0]);
}

#[test]
fn a_connection_keeps_its_session_and_the_next_request_gets_a_clean_one() {
    let pg = Postgres::start(PASSWORD);
    let (_dir, host) = granted(&pg);
    let first = lines(&run(
        &host,
        4,
        &pg.address(PASSWORD),
        json!([
            {"sql": "CREATE TEMP TABLE mine (x int4)", "execute": true},
            {"sql": "SELECT pg_backend_pid()"},
            {"sql": "SELECT pg_backend_pid()"},
            {"sql": "SELECT count(*)::int4 FROM mine"},
            // Left open when the request ends.
            {"sql": "BEGIN", "execute": true},
            {"sql": "CREATE TABLE uncommitted (x int4)", "execute": true},
        ]),
    ));
    assert_eq!(first[1], first[2], "one session for the connection's life");
    assert!(first[3].contains("Int32(0)"), "{}", first[3]);
    // The session goes back to the pool reset: another request does not see
    // the first one's temporary table.
    let second = lines(&run(
        &host,
        4,
        &pg.address(PASSWORD),
        json!([{"sql": "SELECT count(*)::int4 FROM mine"}, {"sql": "SELECT count(*)::int4 FROM uncommitted"}]),
    ));
    assert!(second[0].contains("42P01"), "{}", second[0]);
    // The transaction the first request left open was rolled back, not
    // inherited by the next one.
    assert!(second[1].contains("42P01"), "{}", second[1]);
    assert_eq!(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'").unwrap(), "0");
}

#[test]
fn addresses_outside_the_grant_and_wrong_passwords_are_refused() {
    let pg = Postgres::start(PASSWORD);
    let (_dir, host) = granted(&pg);
    let refused = |address: &str| {
        let reply = run(&host, 4, address, json!([]));
        assert_eq!(reply.status, 500, "{address}: {reply:?}");
        reply.body
    };
    assert_eq!(
        refused(&format!("host=127.0.0.2 port={} user=postgres password={PASSWORD}", pg.port)),
        format!("Error::ConnectionFailed(\"address postgres://127.0.0.2:{} is not permitted\")", pg.port)
    );
    assert_eq!(
        refused(&format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/postgres")),
        "Error::ConnectionFailed(\"address postgres://127.0.0.1:1 is not permitted\")"
    );
    // hostaddr is what tokio-postgres connects to: it is checked too.
    assert_eq!(
        refused(&format!("host=127.0.0.1 hostaddr=10.9.9.9 port={} user=postgres password={PASSWORD}", pg.port)),
        format!("Error::ConnectionFailed(\"address postgres://10.9.9.9:{} is not permitted\")", pg.port)
    );
    assert_eq!(refused("host=/run/postgresql user=postgres"), "Error::ConnectionFailed(\"Unix sockets are not supported on WebAssembly\")");
    let wrong = refused(&pg.address("not-the-password"));
    assert!(wrong.starts_with("Error::ConnectionFailed(") && wrong.contains("password authentication failed"), "{wrong}");
    assert!(!wrong.contains("not-the-password"), "the password leaks into the error: {wrong}");
    // With no grant at all, nothing is reached.
    let (_dir, ungranted) = start_probe_p2(&[]);
    let reply = run(&ungranted, 2, &pg.address(PASSWORD), json!([]));
    assert_eq!(reply.body, format!("Error::ConnectionFailed(\"address postgres://127.0.0.1:{} is not permitted\")", pg.port));
}

/// A row is one message of the protocol, which the driver reads whole
/// before wharf's 128 MiB result cap could look at it: a query answering a
/// 400 MB row ends its session at the message's header instead, so the
/// host's memory does not grow by it, and the next instance gets a fresh
/// session.
#[test]
fn a_row_over_the_limit_ends_its_session_before_the_host_reads_it() {
    let pg = Postgres::start(PASSWORD);
    let (_dir, host) = granted(&pg);
    let address = pg.address(PASSWORD);
    assert!(lines(&run(&host, 4, &address, json!([{"sql": "SELECT 1::int4"}])))[0].contains("Int32(1)"));
    let before = host.peak_memory_bytes();
    let reply = run(&host, 4, &address, json!([{"sql": "SELECT repeat('x', 400000000)"}]));
    let answer = lines(&reply);
    assert!(answer[0].starts_with("Err("), "{answer:?}");
    let grown = host.peak_memory_bytes().saturating_sub(before);
    assert!(grown < 100 << 20, "the host's peak memory grew by {} MiB", grown >> 20);
    assert!(host.logs().contains("the server started a message of 400000"), "{}", host.logs());
    assert!(lines(&run(&host, 4, &address, json!([{"sql": "SELECT 2::int4"}])))[0].contains("Int32(2)"));
}

/// `spin:postgres/postgres@4.2.0`, what spin-sdk 7 (WASIp3) components
/// import: the rows of `query-async` as a stream with the types of 4.0.0
/// (ranges and intervals through their own conversions), `execute-async`,
/// a connection builder whose CA root must be a certificate, and the same
/// grant as every version.
#[test]
fn wasip3_components_query_through_version_4_2_with_streamed_rows() {
    let pg = Postgres::start(PASSWORD);
    let (dir, host) = start_probe(&[format!("postgres://127.0.0.1:{}", pg.port)]);
    let run = |script: Value| request("POST", &host.url("/probe/pg"), &[], Some(script.to_string().as_bytes()));
    let address = pg.address(PASSWORD);
    let reply = run(json!({
        "address": address,
        "statements": [
            {"sql": "CREATE TABLE t (i int4, s text, r int4range, iv interval)", "execute": true},
            {"sql": "INSERT INTO t VALUES ($1, $2, $3, $4), (8, NULL, NULL, NULL)", "execute": true,
             "params": [{"int32": 7}, {"str": "héllo"}, {"range_int32": [[1, "inclusive"], [40, "exclusive"]]}, {"interval": [1500000, 2, 14]}]},
            {"sql": "SELECT * FROM t WHERE i >= $1 ORDER BY i", "params": [{"int32": 7}]},
            {"sql": "SELECT * FROM missing"},
        ],
    }));
    let answers = lines(&reply);
    assert_eq!(&answers[..2], ["Ok(0)", "Ok(2)"]);
    for expected in [
        "name: \"i\", data-type: DbDataType::Int32",
        "name: \"r\", data-type: DbDataType::RangeInt32",
        "DbValue::Int32(7), DbValue::Str(\"héllo\"), DbValue::RangeInt32((Some((1, RangeBoundKind::Inclusive)), Some((40, RangeBoundKind::Exclusive))))",
        "DbValue::Interval(Interval { micros: 1500000, days: 2, months: 14 })",
        "[DbValue::Int32(8), DbValue::DbNull, DbValue::DbNull, DbValue::DbNull]",
        ", Ok(()))",
    ] {
        assert!(answers[2].contains(expected), "{expected} in {}", answers[2]);
    }
    assert!(answers[3].starts_with("Err(PgError(Error::QueryFailed(QueryError::DbError(DbError {") && answers[3].contains("42P01"), "{}", answers[3]);

    // A CA root that is no certificate is refused when given; a real one is
    // taken (the server here has no TLS, so `sslmode=prefer` goes without).
    let bad_root = run(json!({"address": address, "ca_root": "not a certificate", "statements": []}));
    assert!(bad_root.status == 500 && bad_root.body.contains("BadParameter(\"CA root"), "{bad_root:?}");
    let key = dir.path().join("ca.key");
    let certificate = dir.path().join("ca.pem");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=test-ca"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let pem = std::fs::read_to_string(&certificate).unwrap();
    let with_root = run(json!({"address": address, "ca_root": pem, "statements": [{"sql": "SELECT count(*)::int4 AS n FROM t"}]}));
    assert!(lines(&with_root)[0].contains("DbValue::Int32(2)"), "{with_root:?}");

    // Another port than the one granted is refused before any connection.
    let elsewhere = address.replace(&format!("port={}", pg.port), "port=1");
    let refused = run(json!({"address": elsewhere, "statements": []}));
    assert!(refused.status == 500 && refused.body.contains("ConnectionFailed(\"address postgres://127.0.0.1:1 is not permitted\")"), "{refused:?}");
}

/// A component holds at most 64 sessions at once over all its connection
/// strings (one per `application_name` here, each a pool of its own); the
/// next `open` waits for one to come back, then fails.
#[test]
fn a_component_holds_a_bounded_number_of_sessions_over_all_its_connection_strings() {
    let pg = Postgres::start(PASSWORD);
    let (_dir, host) = start_probe(&[format!("postgres://127.0.0.1:{}", pg.port)]);
    let script = json!({"address": pg.address(PASSWORD), "open": 65}).to_string();
    let reply = request("POST", &host.url("/probe/pg"), &[], Some(script.as_bytes()));
    assert_eq!(reply.body, "64 opened; then PgError(Error::ConnectionFailed(\"too many connections\"))", "{reply:?}");
    // They all went back when the request ended.
    let script = json!({"address": pg.address(PASSWORD), "open": 3}).to_string();
    assert_eq!(request("POST", &host.url("/probe/pg"), &[], Some(script.as_bytes())).body, "3 opened");
}
