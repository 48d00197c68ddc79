//! Acknowledged writes survive restarts and kill -9; a full store answers 507 and stays up.

use crate::support::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn a_restart_keeps_nodes_tokens_and_keys() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("db");
    let mut collector = Collector::start_in(&dir, &[]);
    let (node, token) = collector.enroll();
    let key = collector.api_key();
    let unused = collector.enroll_token();
    let auth = format!("Bearer {token}");
    assert_eq!(
        collector.post("/api/agent/heartbeat", &[("Authorization", &auth)], &heartbeat(&node, 5, "running")).status,
        200
    );
    collector.kill9();

    let collector = Collector::start_in(&dir, &[]);
    let view = collector.get(&format!("/api/nodes/{node}"), &key);
    assert_eq!(view.status, 200, "{}", view.body);
    assert!(view.body.contains("\"seq\":5"), "{}", view.body);
    assert_eq!(
        collector.post("/api/agent/heartbeat", &[("Authorization", &auth)], &heartbeat(&node, 6, "running")).status,
        200
    );
    let r = collector.post("/api/agents/enroll", &[], &format!(r#"{{"token":"{unused}","hostname":"h"}}"#));
    assert_eq!(r.status, 200, "an unused enrolment token must survive a restart: {}", r.body);
}

/// Clients hammer the collector with heartbeats (rising `seq`) and enrolments, noting
/// every 2xx. The collector is killed with SIGKILL mid-stream, five times over
/// (`HEARTH_CHAOS_ROUNDS`; `cargo xtask chaos` asks for 20). After each restart the store
/// opens, everything acknowledged is there, and no enrolment token yields a second agent token.
#[test]
fn kill_9_under_load_loses_no_acknowledged_write() {
    let rounds: u64 = std::env::var("HEARTH_CHAOS_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("db");
    let mut collector = Collector::start_in(&dir, &["--allow-anonymous", "--anonymous-per-minute", "1000000"]);
    let key = collector.api_key();
    let tokens: Vec<String> = (0..8 * rounds).map(|_| collector.enroll_token()).collect();
    let tokens = Arc::new(Mutex::new(tokens));
    let nodes: Vec<String> = (0..8).map(|_| new_node_id()).collect();
    // node id → highest seq acknowledged; enrolled node id → its agent token
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let enrolled: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let mut next_seq = 1;
    let beats = Arc::new(std::sync::atomic::AtomicU64::new(0));

    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = collector.addr;
        let mut workers = Vec::new();
        for node in &nodes {
            let (node, stop, acked, beats) = (node.clone(), stop.clone(), acked.clone(), beats.clone());
            let first = next_seq;
            workers.push(std::thread::spawn(move || {
                let mut seq = first;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(status) = try_send(addr, "/api/agent/heartbeat", &heartbeat(&node, seq, "running")) {
                        assert!(status == 200, "unexpected status {status}");
                        acked.lock().unwrap().insert(node.clone(), seq);
                        beats.fetch_add(1, Ordering::Relaxed);
                    }
                    seq += 1;
                }
                seq
            }));
        }
        let (stop2, tokens2, enrolled2) = (stop.clone(), tokens.clone(), enrolled.clone());
        let enroller = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Some(token) = tokens2.lock().unwrap().pop() else {
                    break;
                };
                // Spread over the round, so that kills land between and during enrolments.
                std::thread::sleep(Duration::from_millis(15));
                let body = format!(r#"{{"token":"{token}","hostname":"e"}}"#);
                let Some((200, r)) = try_send_full(addr, "/api/agents/enroll", &body) else {
                    continue;
                };
                enrolled2.lock().unwrap().push((token, r.field("node_id"), r.field("agent_token")));
            }
        });
        std::thread::sleep(Duration::from_millis(150 + 70 * (round % 5)));
        collector.kill9();
        stop.store(true, Ordering::Relaxed);
        next_seq = workers.into_iter().map(|w| w.join().unwrap()).max().unwrap() + 1;
        enroller.join().unwrap();

        collector = Collector::start_in(&dir, &["--allow-anonymous", "--anonymous-per-minute", "1000000"]);
        let acked = acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "round {round}: nothing was acknowledged; the test proves nothing");
        for (node, seq) in &acked {
            let view = collector.get(&format!("/api/nodes/{node}"), &key);
            let stored = match view.json().get("seq") {
                Some(miniserde::json::Value::Number(miniserde::json::Number::U64(n))) => *n,
                other => panic!("round {round}: node {node} lost ({other:?}): {}", view.body),
            };
            assert!(stored >= *seq, "round {round}: node {node} acknowledged seq {seq} but stored {stored}");
        }
        for (token, node, agent_token) in enrolled.lock().unwrap().iter() {
            let auth = format!("Bearer {agent_token}");
            let r = collector.post("/api/agent/heartbeat", &[("Authorization", &auth)], &heartbeat(node, 1, "running"));
            assert_eq!(r.status, 200, "round {round}: acknowledged enrolment of {node} was lost: {}", r.body);
            let again = collector.post("/api/agents/enroll", &[], &format!(r#"{{"token":"{token}","hostname":"e"}}"#));
            assert_eq!(again.status, 410, "round {round}: a spent enrolment token was accepted again: {}", again.body);
        }
    }
    let enrolled = enrolled.lock().unwrap();
    assert!(!enrolled.is_empty(), "no enrolment was acknowledged; the test proves nothing");
    let mut agent_tokens: Vec<&String> = enrolled.iter().map(|(_, _, agent_token)| agent_token).collect();
    agent_tokens.sort();
    agent_tokens.dedup();
    assert_eq!(agent_tokens.len(), enrolled.len(), "an agent token was issued twice");
    eprintln!(
        "kill -9 under load: {rounds} rounds, {} heartbeats and {} enrolments acknowledged, none lost",
        beats.load(Ordering::Relaxed),
        enrolled.len()
    );
}

fn try_send(addr: std::net::SocketAddr, path: &str, body: &str) -> Option<u16> {
    try_send_full(addr, path, body).map(|(status, _)| status)
}

/// Like `send`, but a refused or cut connection (the collector is being killed) is `None`.
fn try_send_full(addr: std::net::SocketAddr, path: &str, body: &str) -> Option<(u16, Response)> {
    let request = request_bytes(addr, "POST", path, &[("Content-Type", "application/json")], body.as_bytes());
    exchange(addr, &request, false).map(|r| (r.status, r))
}

/// The map starts small and grows as it fills (the first heartbeats already outgrow it);
/// at `--max-db-mb` writes get 507 while reads go on; given more room, ingest continues
/// with everything acknowledged before still there.
#[test]
fn a_full_store_answers_507_stays_up_and_continues_when_given_room() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("db");
    let mut collector =
        Collector::start_in(&dir, &["--allow-anonymous", "--anonymous-per-minute", "1000000", "--max-db-mb", "1"]);
    let key = collector.api_key();
    let padding = "x".repeat(4000);
    let mut full = None;
    let mut stored = Vec::new();
    for i in 0..2000 {
        let node = new_node_id();
        let body = v1_heartbeat(&node).replace("/var/lib/vaultmesh", &format!("/{padding}{i}"));
        let r = collector.post("/api/agent/heartbeat", &[], &body);
        if r.status != 200 {
            full = Some(r);
            break;
        }
        stored.push(node);
    }
    let r = full.expect("1 MiB never filled up");
    r.assert_error(507, "storage_full", "--max-db-mb");
    let health = send(collector.addr, "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(collector.get("/api/nodes", &key).status, 200);

    collector.kill9();
    let collector =
        Collector::start_in(&dir, &["--allow-anonymous", "--anonymous-per-minute", "1000000", "--max-db-mb", "8"]);
    for _ in 0..20 {
        let r = collector.post("/api/agent/heartbeat", &[], &v1_heartbeat(&new_node_id()));
        assert_eq!(r.status, 200, "with room again: {}", r.body);
    }
    for node in &stored {
        assert_eq!(collector.get(&format!("/api/nodes/{node}"), &key).status, 200, "{node} was acknowledged");
    }
}

#[test]
fn a_data_directory_that_cannot_be_used_is_a_clear_error_at_start() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    for (dir, says) in [
        (file.as_path(), "cannot create the data directory"),
        (std::path::Path::new("/proc/hearth-db"), "cannot create the data directory"),
    ] {
        let out = std::process::Command::new(collector_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says) && stderr.contains(&dir.display().to_string()), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
