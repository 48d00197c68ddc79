//! Simulated nodes, enrolled for real: an API key, then per node an enrolment token
//! minted over the API, the enrolment, and optionally a first heartbeat. The nodes'
//! ids and tokens go to a file that `heartbeat.lua` reads.

use crate::util::{self, Collector};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const WORKERS: usize = 16;

/// An admin's API key on the collector's store.
pub fn api_key(collector: &Collector) -> Result<String, String> {
    util::admin(&collector.bin, &collector.data_dir, &["user", "add", "bench", "--role", "admin"], "bench-password\n")?;
    Ok(collector.admin(&["apikey", "create", "--user", "bench"])?.trim().to_owned())
}

/// Enrols `count` nodes (with a first heartbeat each, announcing this interval, when
/// `beat` is given), writes "node_id token" lines to `file`, and returns how many nodes a
/// second it managed.
pub fn enrol(collector: &Collector, key: &str, count: usize, beat: Option<u32>, file: &Path) -> Result<f64, String> {
    let addr = collector.addr();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let nodes: Vec<Result<Vec<String>, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                scope.spawn(|| {
                    let mut lines = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < count {
                        // A connection can fail under this load (the kernel's backlog);
                        // a lost enrolment costs only an extra node, so try again.
                        let mut tries = 0;
                        let (node, token) = loop {
                            match enrol_one(addr, key) {
                                Ok(enrolled) => break enrolled,
                                Err(e) if tries == 5 => return Err(e),
                                Err(e) => {
                                    tries += 1;
                                    eprintln!("retrying an enrolment: {e}");
                                    std::thread::sleep(std::time::Duration::from_millis(100));
                                }
                            }
                        };
                        if let Some(interval) = beat {
                            let auth = format!("Bearer {token}");
                            expect(
                                post(addr, "/api/agent/heartbeat", &auth, &heartbeat(&node, interval)),
                                200,
                                "heartbeat",
                            )?;
                        }
                        lines.push(format!("{node} {token}"));
                    }
                    Ok(lines)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut text = String::new();
    for lines in nodes {
        for line in lines? {
            text.push_str(&line);
            text.push('\n');
        }
    }
    std::fs::write(file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

fn enrol_one(addr: SocketAddr, key: &str) -> Result<(String, String), String> {
    let minted = expect(post(addr, "/api/enrollment-tokens", &format!("Bearer {key}"), "{}"), 200, "minting")?;
    let body = format!(r#"{{"token":"{}","hostname":"bench"}}"#, field(&minted, "token")?);
    let enrolled = expect(post(addr, "/api/agents/enroll", "", &body), 200, "enrolment")?;
    Ok((field(&enrolled, "node_id")?, field(&enrolled, "agent_token")?))
}

fn expect(answer: Option<(u16, String)>, status: u16, what: &str) -> Result<String, String> {
    match answer {
        Some((s, body)) if s == status => Ok(body),
        Some((s, body)) => Err(format!("{what} answered {s}: {body}")),
        None => Err(format!("{what}: the connection failed")),
    }
}

fn field(body: &str, name: &str) -> Result<String, String> {
    let object: miniserde::json::Object = miniserde::json::from_str(body).map_err(|_| format!("not JSON: {body}"))?;
    match object.get(name) {
        Some(miniserde::json::Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("no {name} in {body}")),
    }
}

/// One request on a new connection: the status and body, or `None` if the connection failed.
pub fn request(addr: SocketAddr, method: &str, path: &str, auth: &str, body: &str) -> Option<(u16, String)> {
    exchange(addr, method, path, auth, body).map_err(|e| eprintln!("{method} {path}: {e}")).ok()
}

fn exchange(addr: SocketAddr, method: &str, path: &str, auth: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    let auth = if auth.is_empty() { String::new() } else { format!("Authorization: {auth}\r\n") };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all([head.as_bytes(), body.as_bytes()].concat().as_slice())?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let mut rest = String::new();
    reader.read_to_string(&mut rest)?;
    let body = rest.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    let code = status.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    let code = code.ok_or_else(|| std::io::Error::other(format!("no status line, but {status:?}")))?;
    Ok((code, body))
}

fn post(addr: SocketAddr, path: &str, auth: &str, body: &str) -> Option<(u16, String)> {
    request(addr, "POST", path, auth, body)
}

/// The heartbeat `heartbeat.lua` sends, for seeding, announcing `interval` seconds.
fn heartbeat(node: &str, interval: u32) -> String {
    let template = include_str!("../../bench/heartbeat.json");
    let body = template.trim().replace("NODE_ID", node).replace("TIMESTAMP", &now_rfc3339()).replace("SEQ", "1");
    body.replace("\"interval_secs\":30", &format!("\"interval_secs\":{interval}"))
}

fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hearth_wire::format_rfc3339(now.as_millis() as i64)
}
