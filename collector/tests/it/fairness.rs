//! No client starves: keep-alive clients all get their answers.

use crate::support::*;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// 64 clients that ask for keep-alive each send a series of heartbeats at once.
/// Each follows HTTP: it reuses its connection unless the answer says `Connection: close`.
/// Every heartbeat must be answered 200.
#[test]
fn sixty_four_keep_alive_clients_all_get_every_answer() {
    const CLIENTS: usize = 64;
    const BEATS: u64 = 10;
    let collector = Collector::start(&["--allow-anonymous"]);
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let addr = collector.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let node = new_node_id();
                let mut connection: Option<BufReader<TcpStream>> = None;
                barrier.wait();
                for seq in 1..=BEATS {
                    let reader = connection.get_or_insert_with(|| {
                        let stream = TcpStream::connect(addr).unwrap();
                        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                        BufReader::new(stream)
                    });
                    let body = heartbeat(&node, seq, "running");
                    let request = format!(
                        "POST /api/agent/heartbeat HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\
                         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    reader.get_mut().write_all(request.as_bytes()).unwrap();
                    let response = read_response(reader).unwrap_or_else(|| panic!("heartbeat {seq} of {node} got no answer"));
                    assert_eq!(response.status, 200, "{}", response.body);
                    if response.head.to_ascii_lowercase().contains("connection: close") {
                        connection = None;
                    }
                }
                BEATS
            })
        })
        .collect();
    let answered: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(answered, CLIENTS as u64 * BEATS);
}
