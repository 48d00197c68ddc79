//! The request thread does writes only: nothing a client does with reads or logins may
//! hold up another client's heartbeat.

use crate::support::*;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the agent waits for an answer before it counts a heartbeat as failed.
const AGENT_TIMEOUT: Duration = Duration::from_secs(15);

/// Clients that ask for a 32 MiB agent binary and never read it, and a flood of failed
/// logins (argon2id each), all at once. With `--io-timeout 30`, an answer written in line
/// would hold every heartbeat for 30 s or more; each must be answered, and in time.
#[test]
fn non_readers_and_a_login_flood_do_not_hold_up_heartbeats() {
    let temp = tempfile::tempdir().unwrap();
    let agents = temp.path().join("agents");
    std::fs::create_dir_all(agents.join("linux/x86_64")).unwrap();
    std::fs::write(agents.join("linux/x86_64/hearth-agent"), vec![0u8; 32 << 20]).unwrap();
    let c =
        Collector::start_in(&temp.path().join("db"), &["--io-timeout", "30", "--agent-dir", agents.to_str().unwrap()]);
    let (node, token) = c.enroll();
    c.add_user("ann", "viewer", "a long enough password");
    let addr = c.addr;

    // Never read: each asks, then holds its socket open until the test ends.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /agent/binary?os=linux&arch=x86_64 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        stalled.push(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..4)
        .map(|t| {
            let (stop, logins) = (stop.clone(), logins.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body = format!(r#"{{"username":"u{t}-{i}","password":"wrong"}}"#);
                    let r =
                        send(addr, "POST", "/api/auth/login", &[("Content-Type", "application/json")], body.as_bytes());
                    assert!([401, 429].contains(&r.status), "{} {}", r.status, r.body);
                    logins.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let auth = format!("Bearer {token}");
    let started = Instant::now();
    let (mut seq, mut slowest) = (0, Duration::ZERO);
    let seconds = std::env::var("HEARTH_CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    while started.elapsed() < Duration::from_secs(seconds) {
        seq += 1;
        let sent = Instant::now();
        let r = c.post("/api/agent/heartbeat", &[("Authorization", &auth)], &heartbeat(&node, seq, "running"));
        let took = sent.elapsed();
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(took < AGENT_TIMEOUT, "heartbeat {seq} took {took:?}, past the agent's timeout");
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reads are served beside the writes too: the dashboard's list answers meanwhile.
    let key = c.api_key();
    let nodes = c.get("/api/nodes", &key);
    assert_eq!(nodes.status, 200, "{}", nodes.body);
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.join().unwrap();
    }
    eprintln!(
        "isolation for {seconds} s: {seq} heartbeats beside 8 never-read 32 MiB answers and {} failed logins, \
         all answered 200; slowest {slowest:?}",
        logins.load(Ordering::Relaxed)
    );
    drop(stalled);
}
