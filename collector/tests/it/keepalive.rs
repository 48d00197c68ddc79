//! Connections kept alive: a client such as cloudflared or Go's HTTP client sends its next
//! request on the same connection, and the collector closes a connection only when it
//! says so, when the client asks, or when it is idle.

use crate::support::*;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A connection to `collector` that reads answers one after another.
fn connect(collector: &Collector) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(collector.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    BufReader::new(stream)
}

fn beat_bytes(collector: &Collector, node: &str, seq: u64, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    request_bytes(collector.addr, "POST", "/api/agent/heartbeat", &all, heartbeat(node, seq, "running").as_bytes())
}

/// Sends heartbeat `seq` on `conn`, and checks it is accepted and the connection kept.
fn beat_and_keep(conn: &mut BufReader<TcpStream>, collector: &Collector, node: &str, seq: u64) {
    conn.get_mut().write_all(&beat_bytes(collector, node, seq, &[])).unwrap();
    let answer = read_response(conn).expect("an answer on the same connection");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(!says_close(&answer), "HTTP/1.1 keeps the connection: {}", answer.head);
}

fn says_close(response: &Response) -> bool {
    response.head.to_ascii_lowercase().contains("\nconnection: close")
}

/// Whether the collector closed the connection: it ends without another byte.
fn closed(reader: &mut BufReader<TcpStream>) -> bool {
    matches!(reader.read(&mut [0; 1]), Ok(0))
}

fn anonymous() -> Collector {
    Collector::start(&["--allow-anonymous", "--anonymous-per-minute", "1000000"])
}

#[test]
fn heartbeats_share_one_connection_until_the_client_asks_to_close() {
    let collector = anonymous();
    let node = new_node_id();
    let mut conn = connect(&collector);
    for seq in 1..=3 {
        beat_and_keep(&mut conn, &collector, &node, seq);
    }
    conn.get_mut().write_all(&beat_bytes(&collector, &node, 4, &[("Connection", "close")])).unwrap();
    let last = read_response(&mut conn).unwrap();
    assert_eq!(last.status, 200, "{}", last.body);
    assert!(says_close(&last), "{}", last.head);
    assert!(closed(&mut conn), "the connection ends after the answer that says close");
    let metrics = collector.get("/metrics", "").body;
    assert!(metrics.contains("hearth_heartbeats_total{result=\"accepted\"} 4\n"), "{metrics}");
}

#[test]
fn pipelined_requests_are_answered_in_order_on_their_connection() {
    let collector = anonymous();
    let node = new_node_id();
    let mut conn = connect(&collector);
    // A read, a write and a read, written at once: each is answered in turn, though a
    // read and a write are done by different threads.
    let bytes = [
        request_bytes(collector.addr, "GET", "/healthz", &[], b""),
        beat_bytes(&collector, &node, 1, &[]),
        request_bytes(collector.addr, "GET", "/nope", &[], b""),
    ]
    .concat();
    conn.get_mut().write_all(&bytes).unwrap();
    let statuses: Vec<u16> = (0..3).map(|_| read_response(&mut conn).expect("three answers").status).collect();
    assert_eq!(statuses, [200, 200, 404]);
}

#[test]
fn an_idle_connection_is_closed_after_the_read_timeout_without_an_answer() {
    let collector = Collector::start(&["--allow-anonymous", "--io-timeout", "1"]);
    let mut conn = connect(&collector);
    conn.get_mut().write_all(&beat_bytes(&collector, &new_node_id(), 1, &[])).unwrap();
    assert_eq!(read_response(&mut conn).unwrap().status, 200);
    let idle = Instant::now();
    // No 408: the client sent nothing of a next request, so there is nothing to answer.
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    let waited = idle.elapsed();
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_secs(15), "closed after {waited:?}");

    // A next request that starts but does not finish within the timeout is a slow
    // request, answered 408 as on a new connection.
    let mut conn = connect(&collector);
    conn.get_mut().write_all(&beat_bytes(&collector, &new_node_id(), 1, &[])).unwrap();
    assert_eq!(read_response(&mut conn).unwrap().status, 200);
    conn.get_mut().write_all(b"POST /api/agent/heartbeat HTTP/1.1\r\nHost: x\r\n").unwrap();
    let late = read_response(&mut conn).expect("a 408");
    assert_eq!(late.status, 408, "{}", late.body);
    assert!(late.body.contains(r#""code":"request_timeout""#), "{}", late.body);
}

#[test]
fn each_request_on_a_kept_connection_has_the_whole_read_timeout_from_its_first_byte() {
    let collector = Collector::start(&["--allow-anonymous", "--anonymous-per-minute", "1000000", "--io-timeout", "1"]);
    let node = new_node_id();
    let mut conn = connect(&collector);
    // Five requests 0.7 s apart: 3.5 s on one connection with a 1 s timeout.
    for seq in 1..=5 {
        beat_and_keep(&mut conn, &collector, &node, seq);
        std::thread::sleep(Duration::from_millis(700));
    }
    // Idle for 0.7 s, then a request whose head and body are 0.5 s apart: 1.2 s after the
    // last answer, but within 1 s of its own first byte.
    let bytes = beat_bytes(&collector, &node, 6, &[]);
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    conn.get_mut().write_all(&bytes[..split]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    conn.get_mut().write_all(&bytes[split..]).unwrap();
    let answer = read_response(&mut conn).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[test]
fn answers_that_cannot_share_their_connection_close_it() {
    let collector = anonymous();
    // HTTP/1.0 without keep-alive.
    let mut conn = connect(&collector);
    conn.get_mut().write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let old = read_response(&mut conn).unwrap();
    assert_eq!(old.status, 200);
    assert!(says_close(&old) && closed(&mut conn), "{}", old.head);

    // A body too large to read: the rest of it is still in the socket.
    let mut conn = connect(&collector);
    let big = vec![b'x'; 200 << 10];
    let bytes = request_bytes(collector.addr, "POST", "/api/agent/heartbeat", &[], &big);
    let _ = conn.get_mut().write_all(&bytes);
    let refused = read_response(&mut conn).unwrap();
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert!(says_close(&refused), "{}", refused.head);

    // A body whose length is in doubt: where the next request would start is too. It is
    // refused, as RFC 9112 asks.
    for lengths in ["Content-Length: 2\r\nContent-Length: 40", "Content-Length: 2x", "Content-Length: +2"] {
        let mut conn = connect(&collector);
        let head = format!("POST /api/agent/heartbeat HTTP/1.1\r\nHost: x\r\n{lengths}\r\n\r\n{{}}");
        conn.get_mut().write_all(head.as_bytes()).unwrap();
        let answer = read_response(&mut conn).unwrap();
        assert_eq!(answer.status, 400, "{lengths}: {}", answer.body);
        assert!(answer.body.contains(r#""code":"bad_request""#), "{}", answer.body);
        assert!(says_close(&answer) && closed(&mut conn), "{lengths}: {}", answer.head);
    }

    // A collector that exits when idle keeps no connection open past its answer.
    let idle_exit = Collector::start(&["--allow-anonymous", "--idle-exit", "600"]);
    let mut conn = connect(&idle_exit);
    conn.get_mut().write_all(&request_bytes(idle_exit.addr, "GET", "/healthz", &[], b"")).unwrap();
    let answer = read_response(&mut conn).unwrap();
    assert!(says_close(&answer) && closed(&mut conn), "{}", answer.head);

    // A streamed answer ends when its connection closes.
    let mut conn = connect(&collector);
    conn.get_mut().write_all(&request_bytes(collector.addr, "GET", "/metrics/nodes", &[], b"")).unwrap();
    let streamed = read_response(&mut conn).unwrap();
    assert_eq!(streamed.status, 200, "{}", streamed.body);
    assert!(says_close(&streamed), "{}", streamed.head);
}

#[test]
fn keep_alive_is_not_offered_while_many_connections_are_open() {
    let collector = anonymous();
    // More connections than tiny_http keeps alive (KEEP_ALIVE_MAX, 256), each holding a
    // connection thread while it waits for a request that never comes.
    let crowd: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(collector.addr).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let crowded = loop {
        let mut conn = connect(&collector);
        conn.get_mut().write_all(&request_bytes(collector.addr, "GET", "/healthz", &[], b"")).unwrap();
        let answer = read_response(&mut conn).unwrap();
        assert_eq!(answer.status, 200);
        // The accept thread may not have taken every connection of the crowd yet.
        if says_close(&answer) || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(says_close(&crowded), "keep-alive offered beside 300 open connections: {}", crowded.head);
    drop(crowd);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut conn = connect(&collector);
        conn.get_mut().write_all(&request_bytes(collector.addr, "GET", "/healthz", &[], b"")).unwrap();
        if !says_close(&read_response(&mut conn).unwrap()) {
            break;
        }
        assert!(Instant::now() < deadline, "keep-alive never came back once the crowd left");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Clients that write thousands of requests on one connection and never read an answer:
/// their answers fill the socket, and then whoever writes the next one would wait for
/// them (reader threads for reads, the flusher for heartbeats). Heartbeats and reads on
/// other connections must go on being answered in time, and each such connection is cut
/// off at the write timeout.
#[test]
fn clients_that_pipeline_and_never_read_hold_up_only_themselves() {
    const PIPELINED: usize = 4_000;
    let collector = Collector::start(&["--allow-anonymous", "--anonymous-per-minute", "1000000", "--io-timeout", "4"]);
    let key = collector.api_key();
    // Three nodes, and no more: the pipelined heartbeats and the others are theirs.
    let fleet = [new_node_id(), new_node_id(), new_node_id()];
    for node in &fleet {
        assert_eq!(collector.post("/api/agent/heartbeat", &[], &heartbeat(node, 1, "running")).status, 200);
    }
    // An answer of about 3 KiB, under the size written in line (`INLINE_ANSWER`).
    let nodes = collector.get("/api/nodes", &key);
    assert!((2048..4096).contains(&(nodes.head.len() + nodes.body.len())), "{} bytes", nodes.body.len());
    let node = &fleet[0];
    let auth = format!("Bearer {key}");
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let stream = TcpStream::connect(collector.addr).unwrap();
        small_receive_buffer(&stream);
        // Mostly reads, which fill the socket in a second, and heartbeats between them:
        // whichever answer finds it full, its writer would wait.
        let pipelined: Vec<u8> = (0..PIPELINED as u64)
            .flat_map(|i| match i % 4 {
                3 => beat_bytes(&collector, node, i + 1, &[]),
                _ => request_bytes(collector.addr, "GET", "/api/nodes", &[("Authorization", &auth)], b""),
            })
            .collect();
        let mut writer = stream.try_clone().unwrap();
        // The collector stops reading once the answers back up, so this may block: write
        // from a thread of its own, which ends when the connection is cut off.
        std::thread::spawn(move || writer.write_all(&pipelined));
        stalled.push(stream);
    }
    let (mut slowest, started) = (Duration::ZERO, Instant::now());
    for seq in 2..=61 {
        let sent = Instant::now();
        let answer = collector.post("/api/agent/heartbeat", &[], &heartbeat(&fleet[1], seq, "running"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(collector.get("/api/nodes", &key).status, 200);
        slowest = slowest.max(sent.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "pipelining non-readers: slowest heartbeat and read beside them {slowest:?} over {:?}",
        started.elapsed()
    );
    assert!(slowest < Duration::from_secs(2), "a client waited {slowest:?} behind clients that never read");
    // Each stalled connection was cut off once a write to it waited past the timeout,
    // before all its answers were written.
    for stream in &stalled {
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut sink = Vec::new();
        let ended = (&*stream).read_to_end(&mut sink);
        assert!(ended.is_ok() || ended.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset));
        let answers = String::from_utf8_lossy(&sink).matches("HTTP/1.1 200 OK").count();
        assert!(answers < PIPELINED, "every answer was taken, so nothing was ever held up: {answers}");
    }
}

/// Shrinks a client's receive buffer, so that answers it does not read back up into the
/// collector's side of the connection after a few dozen, not thousands.
fn small_receive_buffer(stream: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt reads `size` (a c_int, as SO_RCVBUF takes) from a live socket.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
}

#[test]
fn a_large_answer_arrives_whole_and_its_connection_goes_on() {
    // Answers over 4 KiB are written by a thread of their own, the head with the body's
    // first 64 KiB and then the rest: /metrics of 400 nodes is about 90 KB.
    let collector = anonymous();
    let nodes: Vec<String> = (0..400).map(|_| new_node_id()).collect();
    let mut conn = connect(&collector);
    for node in &nodes {
        beat_and_keep(&mut conn, &collector, node, 1);
    }
    for round in 0..2 {
        conn.get_mut().write_all(&request_bytes(collector.addr, "GET", "/metrics", &[], b"")).unwrap();
        let metrics = read_response(&mut conn).expect("the whole answer, by its Content-Length");
        assert_eq!(metrics.status, 200);
        assert!(metrics.body.len() > 80_000, "{} bytes", metrics.body.len());
        assert!(!says_close(&metrics), "{}", metrics.head);
        assert!(metrics.body.starts_with("# HELP hearth_heartbeats_total "), "{}", &metrics.body[..200]);
        assert!(metrics.body.contains("hearth_nodes{status=\"online\"} 400\n"), "round {round}");
        for node in &nodes {
            let up = format!("hearth_node_up{{node_id=\"{node}\",");
            let seen = format!("hearth_node_last_seen_timestamp_seconds{{node_id=\"{node}\"}} ");
            assert_eq!((metrics.body.matches(&up).count(), metrics.body.matches(&seen).count()), (1, 1), "{node}");
        }
        assert!(metrics.body.ends_with('\n'));
    }
    beat_and_keep(&mut conn, &collector, &nodes[0], 2);
}
