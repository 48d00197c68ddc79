//! Helpers: start the real collector on 127.0.0.1 port 0, run its CLI, speak raw HTTP/1.1.
//! The agent's tests use this file too (`#[path]`), so it finds the collector binary itself.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The collector binary: Cargo names it for this package's tests; other packages' tests
/// find it beside their own test binary (`cargo test --workspace` builds it).
pub fn collector_bin() -> PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_hearth-collector") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("hearth-collector");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace`, or `cargo build -p hearth-collector` first",
        bin.display()
    );
    bin
}

/// A running collector; killed when dropped.
pub struct Collector {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Collector {
    /// Starts a collector on a fresh data directory.
    pub fn start(args: &[&str]) -> Collector {
        let temp = tempfile::tempdir().unwrap();
        let mut collector = Collector::start_in(&temp.path().join("db"), args);
        collector._temp = Some(temp);
        collector
    }

    /// Starts a collector on `data_dir`, which may hold an earlier run's store.
    pub fn start_in(data_dir: &Path, args: &[&str]) -> Collector {
        Collector::start_on("127.0.0.1:0", data_dir, args)
    }

    /// Starts a collector listening on `listen`.
    pub fn start_on(listen: &str, data_dir: &Path, args: &[&str]) -> Collector {
        Collector::start_with_env(listen, data_dir, args, &[])
    }

    /// Starts a collector with extra environment variables (`HEARTH_CLOCK_FILE`, say).
    pub fn start_with_env(listen: &str, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Collector {
        Collector::start_logged(listen, data_dir, args, env, None)
    }

    /// Starts a collector whose log (stderr, at `info`) goes to `log`, if given.
    pub fn start_logged(
        listen: &str,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Collector {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(collector_bin())
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("expected `listening on http://ADDR`, got {line:?}"))
            .parse()
            .unwrap();
        Collector { child, addr, data_dir: data_dir.to_owned(), _temp: None }
    }

    /// Runs an administration command on this collector's data directory and returns its stdout.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(collector_bin()).args(args).arg("--data-dir").arg(&self.data_dir).output().unwrap();
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Runs an administration command with `input` on its stdin.
    pub fn admin_with_input(&self, args: &[&str], input: &str) -> std::process::Output {
        let mut child = Command::new(collector_bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Adds a dashboard user through the CLI.
    pub fn add_user(&self, name: &str, role: &str, password: &str) {
        let out = self.admin_with_input(&["user", "add", name, "--role", role], &format!("{password}\n"));
        assert!(out.status.success(), "user add {name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// An API key acting as a new admin user.
    pub fn api_key(&self) -> String {
        static KEYS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let user = format!("keys-{}", KEYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        self.add_user(&user, "admin", "a long test password");
        self.admin(&["apikey", "create", "--user", &user])
    }

    /// Logs in and returns the `Cookie` header value for the session.
    pub fn login(&self, name: &str, password: &str) -> String {
        let body = format!(r#"{{"username":"{name}","password":"{password}"}}"#);
        let r = self.post("/api/auth/login", &[], &body);
        assert_eq!(r.status, 200, "login as {name}: {}", r.body);
        r.set_cookie().expect("login sets a cookie")
    }

    pub fn enroll_token(&self) -> String {
        self.admin(&["token", "create"])
    }

    /// The collector's peak resident memory so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn get(&self, path: &str, bearer: &str) -> Response {
        send(self.addr, "GET", path, &[("Authorization", &format!("Bearer {bearer}"))], b"")
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        send(self.addr, "POST", path, &all, body.as_bytes())
    }

    /// Waits until the collector has finished `count` more sweeps of its deadline index
    /// (`hearth_sweeps_total`): proof that it looked at the time as it is now.
    pub fn wait_for_sweeps(&self, count: u64) {
        let sweeps = || {
            let text = send(self.addr, "GET", "/metrics", &[], b"").body;
            text.lines().find_map(|l| l.strip_prefix("hearth_sweeps_total ")?.parse::<u64>().ok()).unwrap()
        };
        let (start, deadline) = (sweeps(), std::time::Instant::now() + Duration::from_secs(20));
        while sweeps() < start + count {
            assert!(std::time::Instant::now() < deadline, "the collector did not sweep {count} times in 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Enrols a new node and returns (node id, agent token).
    pub fn enroll(&self) -> (String, String) {
        let token = self.enroll_token();
        let r = self.post("/api/agents/enroll", &[], &format!(r#"{{"token":"{token}","hostname":"h"}}"#));
        assert_eq!(r.status, 200, "{}", r.body);
        (r.field("node_id"), r.field("agent_token"))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    /// A top-level string field of a JSON object body.
    pub fn field(&self, name: &str) -> String {
        match self.json().get(name) {
            Some(miniserde::json::Value::String(s)) => s.clone(),
            other => panic!("no string field {name} in {} ({other:?})", self.body),
        }
    }

    pub fn json(&self) -> miniserde::json::Object {
        miniserde::json::from_str(&self.body).unwrap_or_else(|_| panic!("not a JSON object: {}", self.body))
    }

    /// The `name=value` of a `Set-Cookie` header, as a later request's `Cookie` sends it.
    pub fn set_cookie(&self) -> Option<String> {
        let line = self.header("set-cookie")?;
        Some(line.split(';').next()?.trim().to_owned())
    }

    /// A header's value (the first, by case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// Asserts an error answer: status, code, and that the sentence mentions `hint`.
    pub fn assert_error(&self, status: u16, code: &str, hint: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.field("code"), code, "body: {}", self.body);
        let error = self.field("error");
        assert!(error.contains(hint), "expected {hint:?} in the error {error:?}");
        assert!(self.head.to_ascii_lowercase().contains("content-type: application/json"), "{}", self.head);
    }
}

/// Sends one HTTP/1.1 request on a new connection and reads the whole answer.
pub fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    exchange(addr, &request_bytes(addr, method, path, headers, body), method == "HEAD")
        .expect("the collector sent no answer")
}

/// A request as bytes, with Host and Content-Length.
pub fn request_bytes(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    [head.as_bytes(), body].concat()
}

/// Writes `bytes` on a new connection and reads the answer (its head only, for HEAD);
/// `None` if the connection was refused, or closed without an answer.
pub fn exchange(addr: SocketAddr, bytes: &[u8], head_only: bool) -> Option<Response> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let _ = stream.write_all(bytes); // the server may answer (413, 431) and close before it has read everything
    let mut reader = BufReader::new(stream);
    if head_only {
        read_head(&mut reader)
    } else {
        read_response(&mut reader)
    }
}

/// Reads one response, by Content-Length, or without one to the end of the connection
/// (a streamed body); `None` if the connection closed before the body was whole.
pub fn read_response(reader: &mut impl BufRead) -> Option<Response> {
    let mut response = read_head(reader)?;
    let length: Option<usize> = response
        .head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()));
    let mut body = Vec::new();
    // A 204 or 304 ends at its head (RFC 9110 8.6).
    let length = if matches!(response.status, 204 | 304) { Some(0) } else { length };
    match length {
        Some(length) => {
            body.resize(length, 0);
            reader.read_exact(&mut body).ok()?;
        }
        None => {
            reader.read_to_end(&mut body).ok()?;
        }
    }
    response.body = String::from_utf8(body).unwrap();
    Some(response)
}

/// Reads a status line and headers, and no body (the answer to HEAD).
fn read_head(reader: &mut impl BufRead) -> Option<Response> {
    let head = read_head_text(reader)?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Response { status, head, body: String::new() })
}

/// A complete V1 heartbeat (exactly the seven V1 fields).
pub fn v1_heartbeat(node_id: &str) -> String {
    format!(
        r#"{{"node_id":"{node_id}","hostname":"pi-zero","os_profile":"DebianVault","cloudflare_ok":true,"services_ok":true,"vaultmesh_root":"/var/lib/vaultmesh","timestamp":"2026-01-01T00:00:00Z"}}"#
    )
}

/// A heartbeat with Hearth's extensions: `seq` counts, `state` says running or stopping.
pub fn heartbeat(node_id: &str, seq: u64, state: &str) -> String {
    let v1 = v1_heartbeat(node_id);
    let extras = format!(r#","seq":{seq},"state":"{state}","interval_secs":30,"arch":"armv6l","load":[0.1,0.2,0.3]}}"#);
    format!("{}{extras}", &v1[..v1.len() - 1])
}

/// A fresh random UUID v4.
pub fn new_node_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    hearth_wire::uuid_v4_from_bytes(bytes)
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub head: String,
    pub body: String,
}

/// An HTTP server on loopback that records every request and answers 200.
pub struct Receiver {
    pub addr: SocketAddr,
    hits: std::sync::Arc<std::sync::Mutex<Vec<Hit>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0")
    }

    pub fn start_on(addr: &str) -> Receiver {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: std::sync::Arc<std::sync::Mutex<Vec<Hit>>> = Default::default();
        let record = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let Some(head) = read_head_text(&mut reader) else { continue };
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                let mut body = vec![0; length];
                if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                    continue;
                }
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                record.lock().unwrap().push(Hit { path, head, body: String::from_utf8_lossy(&body).into_owned() });
                let _ =
                    reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        });
        Receiver { addr, hits }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until at least `count` requests arrived; returns them all.
    pub fn wait_for(&self, count: usize) -> Vec<Hit> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let hits = self.hits();
            if hits.len() >= count {
                return hits;
            }
            assert!(std::time::Instant::now() < deadline, "waited for {count} requests, got {}: {hits:#?}", hits.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reads a request's or an answer's head and returns its Content-Length (0 without one).
/// (The agent's tests use it; this crate's do not.)
#[allow(dead_code)]
pub fn read_content_length(reader: &mut impl BufRead) -> u64 {
    let mut length = 0;
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        line.clear();
    }
    length
}

fn read_head_text(reader: &mut impl BufRead) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            return Some(head);
        }
        head.push_str(&line);
    }
}

/// A clock the collector reads from a file (`HEARTH_CLOCK_FILE`), moved by the test.
pub struct TestClock {
    pub path: PathBuf,
    now_ms: std::cell::Cell<i64>,
}

impl TestClock {
    pub fn new(dir: &Path) -> TestClock {
        let clock = TestClock { path: dir.join("clock"), now_ms: std::cell::Cell::new(1_800_000_000_000) };
        clock.set(clock.now_ms.get());
        clock
    }

    pub fn set(&self, ms: i64) {
        self.now_ms.set(ms);
        let temp = self.path.with_extension("tmp");
        std::fs::write(&temp, ms.to_string()).unwrap();
        std::fs::rename(&temp, &self.path).unwrap();
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms.get()
    }

    pub fn advance_secs(&self, secs: i64) {
        self.set(self.now_ms.get() + secs * 1000);
    }

    pub fn env(&self) -> (&'static str, &str) {
        ("HEARTH_CLOCK_FILE", self.path.to_str().unwrap())
    }
}

/// A memory figure of process `pid` from /proc/PID/status (`VmRSS`, `VmHWM`…), in KiB;
/// 0 once the process is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}
