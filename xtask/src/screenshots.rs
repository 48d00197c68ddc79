//! `cargo xtask screenshots`: PNGs of every dashboard page, and the public status page, at
//! desktop (1280 px) and phone (390 px) width, into `target/screenshots/`, so that anyone
//! can see what a change did. A demo collector on loopback gets six nodes, four jobs and a
//! week of history made on a test clock (`HEARTH_CLOCK_FILE`); headless Chromium is driven over
//! WebDriver (chromedriver), as `agent/tests/it/dashboard.rs` drives it.

use crate::util::{self, Collector};
use miniserde::json::{self, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PASSWORD: &str = "screenshots only";
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// Each width, and how tall a page may get at it.
const WIDTHS: [(&str, u32, u32); 2] = [("desktop", 1280, 1500), ("phone", 390, 2000)];

pub fn run(args: &[&str]) -> Result<(), String> {
    if !args.is_empty() {
        return Err(format!("screenshots takes no arguments, not {args:?}"));
    }
    util::build(&[])?;
    let out = util::root().join("target/screenshots");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let work = util::root().join("target/screenshots-demo");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let demo = Demo::start(&work)?;
    let driver = Driver::start()?;
    let mut written = Vec::new();
    for (label, width, height) in WIDTHS {
        let browser = driver.session(width, height)?;
        for (page, url, ready) in demo.pages() {
            browser.open(&url)?;
            if page == "login" {
                browser.wait("the login form", "return !document.getElementById('login-view').hidden")?;
            } else if page != "status" && page != "status-json" {
                browser.ensure_logged_in()?;
                browser.open(&url)?;
            }
            browser.wait(&format!("the {page} page"), &ready)?;
            if page == "add-node" || page == "add-fleet-key" {
                browser.eval("document.getElementById('add-node').click(); return true;")?;
                browser.wait(
                    "the add dialog's warnings",
                    "return document.getElementById('add-warnings').children.length > 0",
                )?;
            }
            if page == "add-fleet-key" {
                browser.eval(
                    "document.getElementById('add-name').value = 'pi-image'; document.getElementById('add-fleet').click(); \
                     document.getElementById('mint').click(); return true;",
                )?;
                browser.wait(
                    "the fleet key",
                    "return document.getElementById('fleet-key').textContent.startsWith('usr_')",
                )?;
            }
            if page == "job-log" {
                browser.eval("document.querySelector('#jobs .run-fail').click(); return true;")?;
                browser.wait(
                    "the run's log",
                    "return document.getElementById('log-dialog').open && document.getElementById('log-text').textContent.length > 0",
                )?;
            }
            std::thread::sleep(Duration::from_millis(300)); // bars and fonts settle
            let path = out.join(format!("{page}-{label}.png"));
            browser.screenshot(&path)?;
            written.push(path);
            // The next page may be this one by another hash, which reloads nothing.
            browser.eval("document.querySelectorAll('dialog[open]').forEach((d) => d.close()); return true;")?;
        }
    }
    println!("wrote {} screenshots into {}:", written.len(), out.display());
    for path in written {
        println!("  {}", path.file_name().unwrap_or_default().to_string_lossy());
    }
    Ok(())
}

/// The demo collector, with its clock file and the ids of its nodes.
struct Demo {
    collector: Collector,
    clock: PathBuf,
    nodes: Vec<(String, String)>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Demo {
    fn start(work: &Path) -> Result<Demo, String> {
        let clock = work.join("clock");
        let end = now_ms();
        let start = end - 7 * DAY;
        set_clock(&clock, start)?;
        let bin = util::root().join("target/debug/hearth-collector");
        let data = work.join("db");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        util::admin(&bin, &data, &["user", "add", "ada", "--role", "admin"], &format!("{PASSWORD}\n"))?;
        let collector = {
            let args = ["--allow-anonymous", "--remind-hours", "0"];
            Collector::start_with_env(&bin, &data, &args, &[("HEARTH_CLOCK_FILE", clock.as_path())])?
        };
        let names = ["nas", "router", "garage-pi", "media-box", "attic-pi", "kitchen-display"];
        let tags = [
            r#""storage","public""#,
            r#""network","public""#,
            r#""garage""#,
            r#""media","public""#,
            r#""attic""#,
            r#""kitchen""#,
        ];
        let nodes: Vec<(String, String)> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (format!("5f1e0c3a-7b2d-4c8e-9a{i:02}-0123456789ab"), (*name).to_owned()))
            .collect();
        let demo = Demo { collector, clock, nodes };
        // A maintenance window three days ago, over the media box, which goes down inside it.
        let window = [
            "maintenance",
            "add",
            "--reason",
            "new disk in the media box",
            "--nodes",
            &demo.nodes[3].0,
            "--start",
            &hearth_wire::format_rfc3339(start + 4 * DAY),
            "--end",
            &hearth_wire::format_rfc3339(start + 4 * DAY + 9 * HOUR),
        ];
        demo.collector.admin(&window)?;
        demo.collector.admin(&[
            "maintenance",
            "add",
            "--reason",
            "patch night",
            "--cron",
            "0 3 * * 0",
            "--duration",
            "2h",
            "--time-zone",
            "Europe/Berlin",
        ])?;
        demo.collector.admin(&["statuspage", "create", "--slug", "home", "--title", "Home lab", "--tags", "public"])?;
        let key = demo.collector.admin(&["apikey", "create", "--user", "ada"])?;
        let bearer = format!("Bearer {}", key.trim());
        let jobs = demo.add_jobs(&bearer)?;
        // A week in 30-minute steps: heartbeats every hour's interval, with outages, a stop,
        // a reboot and a failing check along the way.
        let mut t = start;
        let mut swept = true;
        let mut step = 0;
        while t <= end {
            set_clock(&demo.clock, t)?;
            let day = (t - start) as f64 / DAY as f64;
            for (i, (id, name)) in demo.nodes.iter().enumerate() {
                let up = match i {
                    2 => !(2.0..2.4).contains(&day) && day < 6.75, // garage-pi: out 10 h, and down now
                    3 => !(4.05..4.3).contains(&day) && !(5.0..5.5).contains(&day) && day < 6.9, // media-box
                    4 => day < 6.93,                               // attic-pi: late now
                    5 => day > 0.5 && !(3.0..3.3).contains(&day),  // kitchen-display
                    _ => true,
                };
                let stopping = i == 3 && ((4.98..5.0).contains(&day) || (6.88..6.9).contains(&day));
                if up || stopping {
                    let boot = if i == 1 && day > 4.5 { "b2" } else { "b1" };
                    let failing = i == 1 && day > 6.5;
                    demo.beat(id, name, tags[i], boot, failing, stopping, t)?;
                }
            }
            if t < end {
                demo.run_jobs(&jobs, step, t)?;
            }
            step += 1;
            // Give the sweep a moment where someone has just been silent long enough.
            let someone_down =
                [(2.0, 2.4), (3.0, 3.3), (4.05, 4.3), (6.75, 7.5)].iter().any(|(a, b)| day > a + 0.18 && day < *b);
            if someone_down && swept {
                std::thread::sleep(Duration::from_millis(1300));
                swept = false;
            } else if !someone_down {
                swept = true;
            }
            t += 30 * MIN;
        }
        set_clock(&demo.clock, end)?;
        std::thread::sleep(Duration::from_millis(1300));
        let silence = r#"{"tag":"attic","duration_secs":86400,"reason":"rewiring the attic"}"#;
        post(demo.collector.addr(), "/api/silences", &[("Authorization", &bearer)], silence)?;
        demo.collector.admin(&["job", "pause", &jobs[4]])?;
        Ok(demo)
    }

    /// The demo's jobs, by the API; the path each pings (`/ping/UUID`), in this order: a
    /// nightly backup, a database dump every 6 hours, an hourly photo sync, and an rsync that
    /// gets paused. Returns the paths, and last the rsync's id.
    fn add_jobs(&self, bearer: &str) -> Result<Vec<String>, String> {
        let specs = [
            r#"{"name":"nightly backup","period_secs":86400,"tags":["nas"]}"#,
            r#"{"name":"database dump","period_secs":21600,"tags":["nas","db"]}"#,
            r#"{"name":"photo sync","period_secs":3600,"grace_secs":3600}"#,
            r#"{"name":"old rsync to the usb disk","period_secs":86400}"#,
        ];
        let mut out = Vec::new();
        let mut id = String::new();
        for spec in specs {
            let (status, body) = post(self.collector.addr(), "/api/jobs", &[("Authorization", bearer)], spec)?;
            if status != 201 {
                return Err(format!("a demo job got {status}: {body}"));
            }
            let value: Value = json::from_str(&body).map_err(|_| format!("not JSON from the collector: {body}"))?;
            let url = text(&field(&value, "ping_url"))?;
            out.push(url[url.find("/ping/").ok_or("a ping URL without /ping/")?..].to_owned());
            id = text(&field(&value, "id"))?;
        }
        out.push(id);
        Ok(out)
    }

    /// The jobs' pings in the half hour from `at` (the demo's `step`th): each run a start,
    /// then its end a few minutes later, its log in the body. The backup failed once, the
    /// last database dump failed, and a photo sync is running now.
    fn run_jobs(&self, jobs: &[String], step: i64, at: i64) -> Result<(), String> {
        let last_step = 7 * 48 - 1;
        let day = step / 48;
        let mut ends: Vec<(i64, String, String)> = Vec::new();
        if step % 48 == 6 {
            let (suffix, log) = if day == 3 {
                ("/1", "restic 0.16.4\nopening repository /srv/backup\nFatal: unable to create lock in backend: repository is already locked by PID 2211 on nas by root\nthe `unlock` command can be used to remove stale locks\n".to_owned())
            } else {
                ("", format!("restic 0.16.4\nopening repository /srv/backup\nFiles: {} new, {} changed, 48211 unmodified\nAdded to the repository: {} MiB\nsnapshot {:08x} saved\n", 12 + day * 7, 3 + day, 210 + day * 31, 0x5f3a1c2d_i64 + day * 7919))
            };
            ends.push((at + (4 + day % 3) * MIN, format!("{}{suffix}", jobs[0]), log));
        }
        if step % 12 == 2 {
            let last = step + 12 > last_step;
            let (suffix, log) = if last {
                ("/2", "pg_dump: error: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" failed: No such file or directory\n\tIs the server running locally and accepting connections on that socket?\n".to_owned())
            } else {
                ("", format!("dumped 14 databases, {} MiB, to /srv/dumps\n", 880 + step))
            };
            ends.push((at + 40_000 + (step % 5) * 7_000, format!("{}{suffix}", jobs[1]), log));
        }
        if step % 2 == 1 && step != last_step {
            ends.push((at + MIN + (step % 7) * 20_000, jobs[2].clone(), format!("synced {} photos\n", step % 9)));
        }
        if step % 48 == 20 && day < 3 {
            ends.push((at + 2 * MIN, jobs[3].clone(), "sent 1.2 GB, speedup 40.1\n".to_owned()));
        }
        let starts: Vec<String> = ends
            .iter()
            .map(|(_, path, _)| path.split("/").take(3).collect::<Vec<_>>().join("/"))
            .chain((step == last_step).then(|| jobs[2].clone()))
            .collect();
        for path in starts {
            self.ping(&format!("{path}/start"), "")?;
        }
        ends.sort();
        for (when, path, log) in ends {
            set_clock(&self.clock, when)?;
            self.ping(&path, &log)?;
        }
        Ok(())
    }

    fn ping(&self, path: &str, body: &str) -> Result<(), String> {
        let (status, answer) = post(self.collector.addr(), path, &[], body)?;
        if status != 200 {
            return Err(format!("a demo ping to {path} got {status}: {answer}"));
        }
        Ok(())
    }

    /// A heartbeat from a demo node, sent at `at` by the demo's clock.
    #[allow(clippy::too_many_arguments)]
    fn beat(
        &self,
        id: &str,
        name: &str,
        tags: &str,
        boot: &str,
        failing: bool,
        stopping: bool,
        at: i64,
    ) -> Result<(), String> {
        let state = if stopping { "stopping" } else { "running" };
        let checks = if failing {
            r#"[{"name":"cloudflared","ok":true,"detail":"active"},{"name":"wireguard","ok":false,"detail":"not active (inactive)"}]"#
        } else {
            r#"[{"name":"cloudflared","ok":true,"detail":"active"},{"name":"disk","ok":true,"detail":"41 % used"}]"#
        };
        let body = format!(
            r#"{{"node_id":"{id}","hostname":"{name}","os_profile":"debian","cloudflare_ok":true,"services_ok":{},
            "vaultmesh_root":"/","timestamp":"{}","name":"{name}","tags":[{tags}],"interval_secs":3600,"state":"{state}",
            "boot_id":"{boot}","uptime_secs":{},"os":"Debian GNU/Linux 12 (bookworm)","arch":"aarch64","kernel":"6.1.0-rpi7",
            "agent_version":"0.1.0","cpu_cores":4,"memory_mb":3906,"mem_available_mb":2210,"disk_gb":58,"disk_free_gb":31,
            "load":[0.42,0.35,0.30],"ip_address":"192.168.1.{}","ip_addresses":["192.168.1.{}","fd00::{}"],"checks":{checks}}}"#,
            !failing,
            hearth_wire::format_rfc3339(at),
            (at % (3 * DAY)) / 1000 + 600,
            20 + name.len(),
            20 + name.len(),
            name.len()
        );
        let (status, answer) = post(self.collector.addr(), "/api/agent/heartbeat", &[], &body.replace('\n', ""))?;
        if status != 200 {
            return Err(format!("a demo heartbeat got {status}: {answer}"));
        }
        Ok(())
    }

    /// Each page: a name, its URL, and JavaScript that is true once it is drawn.
    fn pages(&self) -> Vec<(&'static str, String, String)> {
        let base = &self.collector.url;
        let router = &self.nodes[1].0;
        let garage = &self.nodes[2].0;
        vec![
            ("login", format!("{base}/"), "return !document.getElementById('login-view').hidden".into()),
            ("fleet", format!("{base}/#/"), "return document.querySelectorAll('#nodes tbody tr[data-id]').length === 6".into()),
            ("node", format!("{base}/#/nodes/{router}"), "return document.querySelectorAll('#detail-days .day').length === 90 && document.getElementById('detail-events').children.length > 1".into()),
            ("node-offline", format!("{base}/#/nodes/{garage}"), "return document.querySelectorAll('#detail-days .day').length === 90 && document.getElementById('detail-name').textContent.includes('offline')".into()),
            ("maintenance", format!("{base}/#/maintenance"), "return document.getElementById('windows').textContent.includes('patch night')".into()),
            ("add-node", format!("{base}/#/"), "return document.querySelectorAll('#nodes tbody tr[data-id]').length === 6".into()),
            ("add-fleet-key", format!("{base}/#/"), "return document.querySelectorAll('#nodes tbody tr[data-id]').length === 6".into()),
            ("jobs", format!("{base}/#/jobs"), "return document.querySelectorAll('#jobs tbody tr').length === 4".into()),
            ("job-log", format!("{base}/#/jobs"), "return document.querySelectorAll('#jobs .run-fail').length > 0".into()),
            ("status", format!("{base}/status/home"), "return document.querySelectorAll('.node').length === 3".into()),
        ]
    }
}

fn set_clock(path: &Path, ms: i64) -> Result<(), String> {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, ms.to_string()).map_err(|e| e.to_string())?;
    std::fs::rename(&temp, path).map_err(|e| e.to_string())
}

/// One HTTP/1.1 exchange on a fresh connection: the status and the body.
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(120))).map_err(|e| e.to_string())?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    // Read the head, then the body by its length: chromedriver says `Connection: close`
    // and keeps the connection open all the same.
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let fail = |e: std::io::Error| format!("{method} {path}: {e}");
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut buf).map_err(fail)?;
        if n == 0 {
            return Err(format!("{method} {path}: the connection closed before an answer"));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length =
        head.lines().find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()));
    let mut body = raw[head_end + 4..].to_vec();
    match length {
        Some(length) => {
            while body.len() < length {
                let n = stream.read(&mut buf).map_err(fail)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&buf[..n]);
            }
            body.truncate(length);
        }
        None => {
            stream.read_to_end(&mut body).map_err(fail)?;
        }
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    Ok((status, if head.contains("transfer-encoding: chunked") { unchunk(&body) } else { body }))
}

fn unchunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Result<(u16, String), String> {
    exchange(addr, "POST", path, headers, body)
}

/// chromedriver on a free loopback port; killed when dropped.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    fn start() -> Result<Driver, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| e.to_string())?
            .local_addr()
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start chromedriver (apt-get install chromium chromium-driver): {e}"))?;
        let driver = Driver { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while exchange(driver.addr, "GET", "/status", &[], "").is_err() {
            if Instant::now() > deadline {
                return Err("chromedriver did not start within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(driver)
    }

    fn session(&self, width: u32, height: u32) -> Result<Browser<'_>, String> {
        // A window is at least 500 px wide; a phone's width takes device emulation.
        let mobile = if width < 500 {
            format!(r#","mobileEmulation":{{"deviceMetrics":{{"width":{width},"height":{height},"pixelRatio":1}}}}"#)
        } else {
            String::new()
        };
        let capabilities = format!(
            r#"{{"capabilities":{{"alwaysMatch":{{"browserName":"chrome","goog:chromeOptions":{{
            "args":["--headless=new","--no-sandbox","--disable-gpu","--disable-dev-shm-usage","--hide-scrollbars","--window-size={width},{height}"]{mobile}}}}}}}}}"#
        );
        let (status, body) = exchange(self.addr, "POST", "/session", &[], &capabilities.replace('\n', ""))?;
        if status != 200 {
            return Err(format!("chromedriver would not open a session: {body}"));
        }
        let value: Value = json::from_str(&body).map_err(|_| format!("not JSON from chromedriver: {body}"))?;
        let id = text(&field(&field(&value, "value"), "sessionId"))?;
        Ok(Browser { driver: self, id })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Browser<'a> {
    driver: &'a Driver,
    id: String,
}

impl Browser<'_> {
    fn call(&self, method: &str, path: &str, body: &str) -> Result<Value, String> {
        let (status, answer) = exchange(self.driver.addr, method, &format!("/session/{}{path}", self.id), &[], body)?;
        let value: Value = json::from_str(&answer).map_err(|_| format!("not JSON from chromedriver: {answer}"))?;
        if status != 200 {
            return Err(format!("{method} {path}: {answer}"));
        }
        Ok(field(&value, "value"))
    }

    fn open(&self, url: &str) -> Result<(), String> {
        self.call("POST", "/url", &format!(r#"{{"url":{}}}"#, json::to_string(&url))).map(|_| ())
    }

    fn eval(&self, script: &str) -> Result<Value, String> {
        self.call("POST", "/execute/sync", &format!(r#"{{"script":{},"args":[]}}"#, json::to_string(&script)))
    }

    fn wait(&self, what: &str, script: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if matches!(self.eval(script)?, Value::Bool(true)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("waited 30 s for {what}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn ensure_logged_in(&self) -> Result<(), String> {
        self.wait(
            "the dashboard to start",
            "return !document.getElementById('login-view').hidden || !document.getElementById('nav').hidden",
        )?;
        if matches!(self.eval("return !document.getElementById('nav').hidden")?, Value::Bool(true)) {
            return Ok(());
        }
        let login = format!(
            "document.getElementById('username').value = 'ada'; document.getElementById('password').value = {}; \
             document.getElementById('login-submit').click(); return true;",
            json::to_string(&PASSWORD)
        );
        self.eval(&login)?;
        self.wait("the login", "return !document.getElementById('nav').hidden")
    }

    fn screenshot(&self, path: &Path) -> Result<(), String> {
        let png = base64(&text(&self.call("GET", "/screenshot", "")?)?)?;
        std::fs::write(path, png).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = exchange(self.driver.addr, "DELETE", &format!("/session/{}", self.id), &[], "");
    }
}

fn field(value: &Value, name: &str) -> Value {
    match value {
        Value::Object(map) => map.get(name).cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("expected a string from chromedriver, got {}", json::to_string(other))),
    }
}

/// Standard base64, as WebDriver sends screenshots.
fn base64(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("not base64: {:?}", c as char)),
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes() {
        assert_eq!(super::base64("aGVhcnRo").unwrap(), b"hearth");
        assert_eq!(super::base64("aGVhcnRoIQ==").unwrap(), b"hearth!");
    }
}
