//! No client starves: keep-alive clients all get their answers.

use crate::support::*;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// 64 clients that ask for keep-alive each send a series of heartbeats at once, and,
/// like cloudflared's connection pool, hold their connection open until every client
/// is done. Each follows HTTP: it reuses its connection unless the answer says
/// `Connection: close`. Every heartbeat must be answered; a client whose connection is
/// queued behind the others' never is, and times out.
#[test]
fn sixty_four_keep_alive_clients_all_get_every_answer() {
    const CLIENTS: usize = 64;
    const BEATS: u64 = 10;
    // Idle connections must not be cut off during the test, or starvation would heal itself.
    let collector =
        Collector::start(&["--allow-anonymous", "--anonymous-per-minute", "1000000", "--io-timeout", "120"]);
    let start = Arc::new(Barrier::new(CLIENTS));
    let done = Arc::new(Barrier::new(CLIENTS));
    let addr = collector.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (start, done) = (start.clone(), done.clone());
            std::thread::spawn(move || {
                let node = new_node_id();
                let mut open: Vec<BufReader<TcpStream>> = Vec::new();
                let mut reusable = false;
                let mut answered = 0;
                start.wait();
                for seq in 1..=BEATS {
                    if !reusable {
                        let stream = TcpStream::connect(addr).unwrap();
                        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                        open.push(BufReader::new(stream));
                    }
                    let reader = open.last_mut().unwrap();
                    let body = heartbeat(&node, seq, "running");
                    let request = format!(
                        "POST /api/agent/heartbeat HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\
                         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    reader.get_mut().write_all(request.as_bytes()).unwrap();
                    let Some(response) = read_response(reader) else { break };
                    assert_eq!(response.status, 200, "{}", response.body);
                    answered += 1;
                    reusable = !response.head.to_ascii_lowercase().contains("connection: close");
                }
                done.wait(); // connections stay open until everyone is done
                drop(open);
                answered
            })
        })
        .collect();
    let answered: Vec<u64> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let starved = answered.iter().filter(|n| **n < BEATS).count();
    assert_eq!(starved, 0, "{starved} of {CLIENTS} clients were not answered; answers per client: {answered:?}");
}
