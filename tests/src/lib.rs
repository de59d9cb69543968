//! Test harness shared by the host's integration tests and the app's
//! end-to-end tests: free loopback ports, a real `redis-server` started per
//! test, the `wharf` host as a child process, and a small HTTP client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use serde_json::{Value, json};
pub use tempfile;
pub use ureq;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A component built by `scripts/build-components` (wasm32-wasip2, `wasm` profile).
pub fn wasm(crate_name: &str) -> PathBuf {
    built_wasm("wasm32-wasip2", crate_name)
}

/// A guest built for `wasm32-wasip1`: a core module, not a component.
pub fn wasm_p1(crate_name: &str) -> PathBuf {
    built_wasm("wasm32-wasip1", crate_name)
}

fn built_wasm(target: &str, crate_name: &str) -> PathBuf {
    let path = workspace_root().join("target").join(target).join("wasm").join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(path.exists(), "{} is missing: run scripts/build-components first", path.display());
    path
}

/// A tiny HTTP server answering `upstream` to every request; records request heads.
pub fn http_upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            record.lock().unwrap().push(head);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream");
        }
    });
    (port, seen)
}

/// A loopback port nobody listens on right now, and never handed out before
/// in this test process. Tests run in parallel threads, and the kernel may
/// give the same ephemeral port to two `bind(0)` calls in a row: a second
/// server would then fail to bind while the first one answers in its place
/// (seen in CI: a test's Redis vanished when another test stopped its own).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// Whether something accepts connections on `addr` within `timeout`.
fn wait_for_listener(addr: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        // A connect to a loopback port nobody listens on yet can pick that
        // very port as its own source port and connect to itself (TCP
        // simultaneous open), which says nothing about the server.
        if TcpStream::connect(addr).is_ok_and(|stream| stream.local_addr().ok() != stream.peer_addr().ok()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A `redis-server` of the test's own on a free port, stopped on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    /// `requirepass`, as the deploy's Redis has one; empty for none.
    pub password: String,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_with_password("")
    }

    /// A server that refuses clients without `password` (none if empty).
    pub fn start_with_password(password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut redis = Self { child: None, port: free_port(), password: password.to_string(), dir };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--requirepass", &self.password])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/setup installs it)");
        let pid = child.id();
        self.child = Some(child);
        assert!(wait_for_listener(&format!("127.0.0.1:{}", self.port), Duration::from_secs(10)), "redis-server did not start");
        // The server answering must be this one, not another process that
        // holds the port (then ours failed to bind and exited).
        let info: String = eventually(Duration::from_secs(10), "redis-server to answer INFO", || {
            let mut connection = redis::Client::open(self.url()).ok()?.get_connection().ok()?;
            redis::cmd("INFO").arg("server").query(&mut connection).ok()
        });
        assert!(
            info.lines().any(|line| line.trim() == format!("process_id:{pid}")),
            "port {} is held by another redis-server than the one this test started",
            self.port
        );
    }

    /// With the password, if any, as clients connect.
    pub fn url(&self) -> String {
        if self.password.is_empty() {
            format!("redis://{}", self.host())
        } else {
            format!("redis://:{}@{}", self.password, self.host())
        }
    }

    /// `host:port`, the shop's `redis_host` variable.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The shop's Redis variables (spin.toml) for this server.
    pub fn shop_variables(&self) -> [(&'static str, String); 2] {
        [("SPIN_VARIABLE_REDIS_HOST", self.host()), ("SPIN_VARIABLE_REDIS_PASSWORD", self.password.clone())]
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }

    /// Stops the server (data is lost: it keeps none on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Debian's `docker-registry` (the CNCF distribution registry) of the test's
/// own: a free port, storage and config in a temp dir; stopped on drop.
pub struct OciRegistry {
    child: Child,
    pub port: u16,
    /// The address it listens on (loopback unless started on all interfaces).
    pub host: String,
    dir: tempfile::TempDir,
}

impl OciRegistry {
    /// On loopback, open to all.
    pub fn start() -> Self {
        Self::start_with("127.0.0.1", None)
    }

    /// Listening on `ip`; with `user` set, only that user and password get in
    /// (htpasswd, as a private registry).
    pub fn start_with(ip: &str, user: Option<(&str, &str)>) -> Self {
        Self::start_configured(ip, user, None)
    }

    /// Listening on `ip`, open to all, over HTTPS with this certificate and key.
    pub fn start_tls(ip: &str, certificate: &Path, key: &Path) -> Self {
        Self::start_configured(ip, None, Some((certificate, key)))
    }

    fn start_configured(ip: &str, user: Option<(&str, &str)>, tls: Option<(&Path, &Path)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {ip}:{port}\n",
            dir.path().join("data").display()
        );
        // Under `http:`, which the config ends with so far.
        if let Some((certificate, key)) = tls {
            config.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", certificate.display(), key.display()));
        }
        if let Some((name, password)) = user {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{name}:{}\n", bcrypt::hash(password, 4).unwrap())).unwrap();
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", htpasswd.display()));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry must be installed (scripts/setup installs it)");
        let mut registry = Self { child, port, host: format!("{ip}:{port}"), dir };
        assert!(wait_for_listener(&registry.host, Duration::from_secs(20)), "docker-registry did not start: {}", registry.log());
        // Accepting connections is not yet answering them (a CI run saw the
        // first upload reset): a plain-HTTP registry is ready once its API
        // root answers, and it must still be ours then (it exits when the
        // port turns out taken). ureq here speaks no TLS, so a TLS registry
        // is checked by its clients' first request.
        if tls.is_none() {
            let root = format!("http://{}/v2/", registry.host);
            eventually(Duration::from_secs(20), "docker-registry to answer /v2/", || {
                // 401 from a registry that wants credentials is an answer too.
                try_request("GET", &root, &[], None).ok().filter(|reply| matches!(reply.status, 200 | 401))
            });
        }
        assert!(registry.child.try_wait().unwrap().is_none(), "docker-registry exited: {}", registry.log());
        registry
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `<host>/<repository>`.
    pub fn reference(&self, repository: &str) -> String {
        format!("{}/{repository}", self.host)
    }

    /// An image manifest, as stored (`repository`, tag or digest).
    pub fn manifest(&self, repository: &str, tag: &str) -> Value {
        let url = format!("http://{}/v2/{repository}/manifests/{tag}", self.host);
        let reply = request("GET", &url, &[("accept", "application/vnd.oci.image.manifest.v1+json")], None);
        assert_eq!(reply.status, 200, "GET {url}: {reply:?}");
        reply.json()
    }

    /// A blob's bytes, as served.
    pub fn blob(&self, repository: &str, digest: &str) -> Vec<u8> {
        let url = format!("http://{}/v2/{repository}/blobs/{digest}", self.host);
        let response = ureq::get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let mut bytes = Vec::new();
        response.into_reader().read_to_end(&mut bytes).unwrap();
        bytes
    }

    /// Uploads `bytes` as a blob of `repository` (the distribution API's
    /// monolithic upload); returns its digest.
    pub fn upload_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let start = format!("http://{}/v2/{repository}/blobs/uploads/", self.host);
        let reply = request("POST", &start, &[], Some(b""));
        assert_eq!(reply.status, 202, "POST {start}: {reply:?}");
        let location = reply.header("location").expect("an upload location").to_string();
        let location = if location.starts_with("http") { location } else { format!("http://{}{location}", self.host) };
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{separator}digest={digest}");
        let reply = request("PUT", &put, &[("content-type", "application/octet-stream")], Some(bytes));
        assert_eq!(reply.status, 201, "PUT {put}: {reply:?}");
        digest
    }

    /// Stores an OCI image manifest as `repository:tag`, exactly as given.
    pub fn put_manifest(&self, repository: &str, tag: &str, manifest: &Value) {
        let url = format!("http://{}/v2/{repository}/manifests/{tag}", self.host);
        let reply = request("PUT", &url, &[("content-type", "application/vnd.oci.image.manifest.v1+json")], Some(manifest.to_string().as_bytes()));
        assert_eq!(reply.status, 201, "PUT {url}: {reply:?}");
    }

    /// Where the registry keeps a blob on disk (its filesystem driver's layout).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir.path().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address of this machine that is not loopback (`hostname -I`), for
/// what must differ between loopback and the network.
pub fn non_loopback_ip() -> String {
    let output = Command::new("hostname").arg("-I").output().expect("hostname -I");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()))
        .unwrap_or_else(|| panic!("this test needs an IPv4 address other than loopback; `hostname -I` gave: {text}"))
        .to_string()
}

/// Runs `wharf <args>` to completion with `env` added; returns (success, stdout + stderr).
pub fn wharf(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(wharf_binary());
    command.args(args).current_dir(workspace_root()).env("RUST_LOG", "warn").stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", wharf_binary().display()));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The `wharf` binary: `$WHARF_BIN`, else the workspace's release build
/// (a debug build compiles components far too slowly for tests).
pub fn wharf_binary() -> PathBuf {
    std::env::var_os("WHARF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/wharf"))
}

/// A running host process, stopped (SIGKILL) on drop unless stopped first.
pub struct Host {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    _dir: Option<tempfile::TempDir>,
    /// The read end of stdout under [`HostConfig::stdout_unread`], held
    /// open and never read.
    _unread_stdout: Option<std::process::ChildStdout>,
}

#[derive(Default, Clone)]
pub struct HostConfig {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub port: Option<u16>,
    /// stdout goes to a pipe nobody reads (stderr still to the log).
    pub stdout_unread: bool,
}

impl HostConfig {
    /// The host's stdout is a pipe that is never read, as a stalled
    /// container log reader leaves it.
    pub fn stdout_unread(mut self) -> Self {
        self.stdout_unread = true;
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn envs<V: Into<String>>(mut self, vars: impl IntoIterator<Item = (&'static str, V)>) -> Self {
        self.env.extend(vars.into_iter().map(|(key, value)| (key.to_string(), value.into())));
        self
    }
}

impl Host {
    /// Starts `wharf up -f <manifest>` and waits until it answers its health route.
    pub fn start(manifest: &Path, config: HostConfig) -> Self {
        let mut host = Self::spawn(manifest, config);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = ureq::get(&host.url("/.well-known/spin/health")).call()
                && r.status() == 200
            {
                return host;
            }
            if let Some(status) = host.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("wharf exited with {status} before it was ready:\n{}", host.logs());
            }
            assert!(Instant::now() < deadline, "wharf did not become ready:\n{}", host.logs());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Starts the host without waiting (for start-up failure tests).
    pub fn spawn(manifest: &Path, config: HostConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("wharf.log");
        let port = config.port.unwrap_or_else(free_port);
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(wharf_binary());
        command
            .arg("up")
            .arg("-f")
            .arg(manifest)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(&config.args)
            .env("RUST_LOG", "info")
            .env("WHARF_CACHE_DIR", workspace_root().join("target/wharf-cache"))
            .env_remove("SPIN_HTTP_LISTEN_ADDR")
            .stdin(Stdio::null())
            .stdout(if config.stdout_unread { Stdio::piped() } else { Stdio::from(log_file.try_clone().unwrap()) })
            .stderr(log_file);
        for (k, v) in &config.env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e} (build it with cargo build --release -p wharf)", wharf_binary().display()));
        let unread_stdout = child.stdout.take();
        Self { child: Some(child), port, log, _dir: Some(dir), _unread_stdout: unread_stdout }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The most memory the host process has held so far (VmHWM): what a
    /// test of a memory bound compares before and after.
    pub fn peak_memory_bytes(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib = status.lines().find_map(|line| line.strip_prefix("VmHWM:")).expect("VmHWM in /proc/<pid>/status");
        kib.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
    }

    /// The log so far. wharf writes its log from a thread of its own, so a
    /// line logged just before a response may reach the file just after
    /// it: this reads until the file has stopped growing for 50 ms (at most
    /// 5 s).
    pub fn logs(&self) -> String {
        let read = || {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(&self.log) {
                let _ = f.read_to_string(&mut text);
            }
            text
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut text = read();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let again = read();
            if again.len() == text.len() || Instant::now() > deadline {
                return again;
            }
            text = again;
        }
    }

    /// Waits for the process to exit by itself and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
    }

    /// Kills the process at once (a crash, for recovery tests).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A response read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends a request; non-2xx statuses are answers too, not errors.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    try_request(method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// [`request`], with a failure to connect or to send as an error: for
/// clients that retry elsewhere, as a Service's clients do when a pod goes.
pub fn try_request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<Reply, ureq::Transport> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(e)) => return Err(e),
    };
    let status = response.status();
    let headers = response.headers_names().into_iter().map(|n| {
        let v = response.header(&n).unwrap_or("").to_string();
        (n, v)
    }).collect();
    let body = response.into_string().unwrap_or_default();
    Ok(Reply { status, headers, body })
}

pub fn get(url: &str) -> Reply {
    request("GET", url, &[], None)
}

pub fn post_json(url: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request("POST", url, &all, Some(body.to_string().as_bytes()))
}

/// Sends `raw` (a whole HTTP/1.1 request, as bytes on the wire) to `addr`
/// and returns everything the server sends until it closes the connection:
/// for requests no HTTP client library will send (two `Host` headers, an
/// absolute-form target) or framing a test must see as it was sent.
pub fn raw_http(addr: SocketAddr, raw: &[u8]) -> String {
    use std::io::Write;
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(raw).unwrap();
    let mut out = Vec::new();
    // The server may answer and close before it has read all of a body it refuses.
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of a raw HTTP/1.1 reply (as [`raw_http`] returns it), with
/// chunked encoding undone: a host frames a body its component did not
/// frame with chunks, as Spin does.
pub fn raw_body(reply: &str) -> String {
    let (head, mut rest) = reply.split_once("\r\n\r\n").unwrap_or((reply, ""));
    if !head.to_ascii_lowercase().contains("\r\ntransfer-encoding: chunked") {
        return rest.to_string();
    }
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or_else(|_| panic!("a chunk size, not {size:?}: {reply}"));
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or_else(|| panic!("CRLF after a chunk: {reply}"));
    }
    body
}

/// `sha256:<hex>` of `bytes`, as OCI names content.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Writes `text` as `spin.toml` in a fresh directory and returns both.
pub fn manifest_dir(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `command` as the owner of `dir` (`user` of this system) when the
/// test runs as root: PostgreSQL and mosquitto refuse to run as root, or
/// drop to a user of their own that cannot read the test's directory.
fn as_service_user(command: &mut Command, dir: &Path, user: &str) {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, user]).output().expect("id");
        assert!(out.status.success(), "no system user `{user}` (its Debian package creates it)");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let (uid, gid) = (id("-u"), id("-g"));
    for entry in walk(dir) {
        std::os::unix::fs::lchown(&entry, Some(uid), Some(gid)).unwrap();
    }
    command.uid(uid).gid(gid);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            paths.extend(walk(&entry.path()));
        } else {
            paths.push(entry.path());
        }
    }
    paths
}

/// Debian's `postgresql` server binaries (the newest major installed).
fn postgres_bin(name: &str) -> PathBuf {
    let mut majors: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("postgresql must be installed (scripts/setup installs it)")
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    majors.sort_by_key(|bin| bin.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()?.parse::<u32>().ok()));
    majors.last().expect("a PostgreSQL major version with initdb").join(name)
}

/// A PostgreSQL cluster of the test's own on a free loopback port: user
/// `postgres` with `password` (SCRAM), database `postgres`; stopped on drop.
pub struct Postgres {
    child: Child,
    pub port: u16,
    pub password: String,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start(password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, password).unwrap();
        let data = dir.path().join("data");
        let mut initdb = Command::new(postgres_bin("initdb"));
        initdb.arg("-D").arg(&data).args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"]);
        initdb.arg(format!("--pwfile={}", password_file.display())).stdout(Stdio::null()).stderr(Stdio::null());
        as_service_user(&mut initdb, dir.path(), "postgres");
        assert!(initdb.status().expect("initdb").success(), "initdb failed");
        let port = free_port();
        let mut server = Command::new(postgres_bin("postgres"));
        server.arg("-D").arg(&data).args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        server.arg("-c").arg(format!("unix_socket_directories={}", dir.path().display()));
        server.stdout(Stdio::null()).stderr(Stdio::null());
        as_service_user(&mut server, dir.path(), "postgres");
        let child = server.spawn().expect("postgres");
        let postgres = Self { child, port, password: password.to_string(), _dir: dir };
        // The port opens a moment before the server takes queries.
        eventually(Duration::from_secs(30), "postgres to take queries", || postgres.psql("SELECT 1").ok());
        postgres
    }

    /// A connection string as Spin apps give it, with this password.
    pub fn address(&self, password: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres password={password} dbname=postgres", self.port)
    }

    /// Runs `sql` with psql; its output, unaligned and without headers.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-c", sql])
            .env("PGPASSWORD", &self.password)
            .output()
            .expect("psql");
        if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()) } else { Err(String::from_utf8_lossy(&out.stderr).to_string()) }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's `mosquitto` broker on a free loopback port, taking only `user`
/// with `password`; stopped on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start(user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let passwords = dir.path().join("passwords");
        let made = Command::new("mosquitto_passwd").args(["-b", "-c"]).arg(&passwords).args([user, password]).status();
        assert!(made.expect("mosquitto_passwd (Debian's mosquitto)").success(), "mosquitto_passwd failed");
        let port = free_port();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\npersistence false\n", passwords.display()),
        )
        .unwrap();
        let binary = if Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
        let mut broker = Command::new(binary);
        broker.arg("-c").arg(&config).stdout(Stdio::null()).stderr(Stdio::null());
        as_service_user(&mut broker, dir.path(), "mosquitto");
        let child = broker.spawn().expect("mosquitto must be installed (scripts/setup installs it)");
        assert!(wait_for_listener(&format!("127.0.0.1:{port}"), Duration::from_secs(10)), "mosquitto did not start");
        Self { child, port, _dir: dir }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real Spin `version` from `../shared/spin`, unpacked by its
/// install.sh; None (and a printed line) when that directory is absent.
pub fn real_spin(version: &str, test: &str) -> Option<String> {
    let shared = workspace_root().join("../shared/spin");
    if !shared.join("install.sh").exists() {
        println!("SKIPPED {test}: no real Spin binaries at {} (they come with the CI workspace)", shared.display());
        return None;
    }
    let output = Command::new(shared.join("install.sh")).arg(version).output().expect("run ../shared/spin/install.sh");
    assert!(output.status.success(), "install.sh {version}: {}", String::from_utf8_lossy(&output.stderr));
    Some(String::from_utf8(output.stdout).unwrap().trim().to_string())
}

/// A real `spin up`, started in a process group of its own because Spin 3.x
/// runs each trigger in a child process; the whole group is killed on drop.
pub struct SpinUp {
    child: Child,
    pub port: u16,
}

impl SpinUp {
    /// Runs `command` (`spin up ... --listen 127.0.0.1:<port>`, described by
    /// `what` in failures) and waits until its HTTP trigger answers.
    pub fn start(mut command: Command, port: u16, what: &str) -> SpinUp {
        use std::os::unix::process::CommandExt;
        let child = command.process_group(0).spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut spin = SpinUp { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        // An HTTP answer, not a TCP connect: a connect also succeeds while
        // something else holds the port for a moment (CI once saw a request
        // refused right after a connect had succeeded), and a connect to a
        // port nobody listens on yet can connect to itself.
        let health = format!("http://127.0.0.1:{port}/.well-known/spin/health");
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build();
        let listening = || agent.get(&health).call().is_ok();
        while !listening() {
            if let Ok(Some(status)) = spin.child.try_wait() {
                panic!("{what} exited ({status}) before listening");
            }
            assert!(std::time::Instant::now() < deadline, "{what} did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        spin
    }

    /// `<spin> up -f <manifest>` on a free port with `state_dir`, its output
    /// dropped, once it answers.
    pub fn up(spin: &str, manifest: &Path, state_dir: &Path, what: &str) -> SpinUp {
        SpinUp::up_with(spin, manifest, state_dir, &[], what)
    }

    /// [`SpinUp::up`] with more arguments to `spin up`.
    pub fn up_with(spin: &str, manifest: &Path, state_dir: &Path, args: &[&std::ffi::OsStr], what: &str) -> SpinUp {
        let port = free_port();
        let mut command = Command::new(spin);
        command.arg("up").arg("-f").arg(manifest).args(["--listen", &format!("127.0.0.1:{port}"), "--state-dir"]);
        command.arg(state_dir).args(args).stdout(Stdio::null()).stderr(Stdio::null());
        SpinUp::start(command, port, what)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for SpinUp {
    fn drop(&mut self) {
        // SAFETY: a plain kill(2) on the process group this struct started.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
