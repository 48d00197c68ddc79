//! Hostile clients, all at once. `cargo xtask chaos` runs this longer
//! (`HEARTH_CHAOS_SECONDS`); `cargo test` runs it for a few seconds.

use crate::support::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the hostile mix lasts.
fn chaos_seconds() -> u64 {
    std::env::var("HEARTH_CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8)
}

const SLOW_CONNECTIONS: usize = 1000;
/// A quarter of the unit's MemoryMax: 1,000 connection threads (their stacks and buffers)
/// take 50-65 MiB of a debug build; a body or header read whole would take hundreds.
const RSS_LIMIT_KIB: u64 = 96 * 1024;

/// At once: 1,000 connections that each send a byte every 2 s (reconnecting when cut
/// off), 64 MiB headers, 100 MiB bodies (announced and chunked), and garbage. Meanwhile
/// an enrolled node's heartbeats must all be answered 200, and the collector must stay
/// up with at most 96 MiB resident.
#[test]
fn hostile_clients_at_once_do_not_stop_heartbeats_or_grow_memory() {
    let collector = Collector::start(&["--io-timeout", "3"]);
    let (node, token) = collector.enroll();
    let addr = collector.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let running = |f: fn(SocketAddr, &AtomicBool) -> usize| {
        let stop = stop.clone();
        std::thread::spawn(move || f(addr, &stop))
    };
    let attackers = [running(slow_clients), running(huge_headers), running(huge_bodies), running(garbage)];

    let pid = collector.pid();
    let started = Instant::now();
    let (mut latencies, mut peak_rss, mut seq) = (Vec::new(), 0, 0);
    let auth = format!("Bearer {token}");
    while started.elapsed() < Duration::from_secs(chaos_seconds()) {
        seq += 1;
        let sent = Instant::now();
        let r = collector.post("/api/agent/heartbeat", &[("Authorization", &auth)], &heartbeat(&node, seq, "running"));
        latencies.push(sent.elapsed());
        assert_eq!(r.status, 200, "a legitimate heartbeat under attack: {}", r.body);
        peak_rss = peak_rss.max(proc_status_kib(pid, "VmRSS"));
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<usize> = attackers.into_iter().map(|a| a.join().unwrap()).collect();
    latencies.sort();
    let p99 = latencies[(latencies.len() - 1) * 99 / 100];
    eprintln!(
        "hostile mix for {} s: {} slow connections opened, {} huge headers, {} huge bodies, {} garbage; \
         {} legitimate heartbeats, all answered, p99 {:.1} ms, max {:.1} ms; collector peak RSS {:.1} MiB",
        chaos_seconds(),
        sent[0],
        sent[1],
        sent[2],
        sent[3],
        latencies.len(),
        p99.as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0,
        peak_rss as f64 / 1024.0
    );
    assert!(sent[0] >= SLOW_CONNECTIONS, "the slow clients never got going: {sent:?}");
    assert!(peak_rss <= RSS_LIMIT_KIB, "the collector reached {peak_rss} KiB resident");
    assert_eq!(send(addr, "GET", "/healthz", &[], b"").status, 200);
}

/// Keeps 1,000 connections open, each sending one more header byte every 2 s.
fn slow_clients(addr: SocketAddr, stop: &AtomicBool) -> usize {
    let mut open: Vec<Option<TcpStream>> = (0..SLOW_CONNECTIONS).map(|_| None).collect();
    let mut opened = 0;
    while !stop.load(Ordering::Relaxed) {
        for slot in &mut open {
            if slot.is_none() {
                *slot = TcpStream::connect(addr).ok();
                opened += 1;
                if let Some(stream) = slot {
                    let _ = stream.write_all(b"POST /api/agent/heartbeat HTTP/1.1\r\nX-Slow: ");
                }
            }
            if slot.as_mut().is_some_and(|stream| stream.write_all(b"a").is_err()) {
                *slot = None; // cut off by the collector: come back
            }
        }
        for _ in 0..20 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    opened
}

/// One 64 MiB header line after another.
fn huge_headers(addr: SocketAddr, stop: &AtomicBool) -> usize {
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(addr) else { continue };
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nX-Big: ");
        for _ in 0..64 {
            if stream.write_all(&chunk).is_err() {
                break;
            }
        }
        sent += 1;
    }
    sent
}

/// 100 MiB bodies, announced with Content-Length or sent chunked.
fn huge_bodies(addr: SocketAddr, stop: &AtomicBool) -> usize {
    let chunk = vec![b' '; 1 << 20];
    let chunked = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(addr) else { continue };
        let (head, body) = if sent % 2 == 0 {
            ("Content-Length: 104857600", &chunk)
        } else {
            ("Transfer-Encoding: chunked", &chunked)
        };
        let head = format!("POST /api/agent/heartbeat HTTP/1.1\r\nContent-Type: application/json\r\n{head}\r\n\r\n");
        let _ = stream.write_all(head.as_bytes());
        for _ in 0..100 {
            if stream.write_all(body).is_err() {
                break;
            }
        }
        sent += 1;
    }
    sent
}

/// Connections carrying 64 KiB of pseudo-random bytes.
fn garbage(addr: SocketAddr, stop: &AtomicBool) -> usize {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        let bytes: Vec<u8> = (0..65536)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        if let Ok(mut stream) = TcpStream::connect(addr) {
            let _ = stream.write_all(&bytes);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sent
}
