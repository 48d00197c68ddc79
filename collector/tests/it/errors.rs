//! Every error is JSON `{"code","error"}` with the right status, on every route.

use crate::support::*;
use std::io::{BufReader, Write};
use std::net::TcpStream;

#[test]
fn bad_bodies_name_what_is_wrong() {
    let collector = Collector::start(&["--allow-anonymous"]);
    let hb = "/api/agent/heartbeat";
    collector.post(hb, &[], "{not json").assert_error(400, "invalid_json", "not valid JSON");
    collector.post(hb, &[], "[1,2]").assert_error(400, "invalid_json", "JSON object");
    let missing = v1_heartbeat(&new_node_id()).replace(r#""services_ok":true,"#, "");
    collector.post(hb, &[], &missing).assert_error(400, "invalid_field", "`services_ok` is required");
    let wrong_type = v1_heartbeat(&new_node_id()).replace(r#""cloudflare_ok":true"#, r#""cloudflare_ok":"yes""#);
    collector.post(hb, &[], &wrong_type).assert_error(400, "invalid_field", "`cloudflare_ok` must be true or false");
    let bad_id = v1_heartbeat("node-7");
    collector.post(hb, &[], &bad_id).assert_error(400, "invalid_field", "`node_id` must be a UUID");
    let bad_time = v1_heartbeat(&new_node_id()).replace("2026-01-01T00:00:00Z", "last tuesday");
    collector.post(hb, &[], &bad_time).assert_error(400, "invalid_field", "`timestamp` must be an RFC 3339 time");
    collector.post("/api/agents/enroll", &[], r#"{"hostname":"h"}"#).assert_error(
        400,
        "invalid_field",
        "`token` is required",
    );
    let not_utf8 = send(collector.addr, "POST", hb, &[("Content-Type", "application/json")], &[0xff, 0xfe, b'{']);
    not_utf8.assert_error(400, "invalid_json", "UTF-8");
}

#[test]
fn routes_methods_and_media_types() {
    let collector = Collector::start(&["--allow-anonymous"]);
    let r = send(collector.addr, "GET", "/api/agent/heartbeat", &[], b"");
    r.assert_error(405, "method_not_allowed", "POST");
    assert!(r.head.contains("Allow: POST"), "{}", r.head);
    send(collector.addr, "DELETE", "/healthz", &[], b"").assert_error(405, "method_not_allowed", "GET");
    send(collector.addr, "GET", "/no/such/thing", &[], b"").assert_error(404, "not_found", "/no/such/thing");
    let form = send(
        collector.addr,
        "POST",
        "/api/agent/heartbeat",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"a=1",
    );
    form.assert_error(415, "unsupported_media_type", "application/json");
    let health = send(collector.addr, "GET", "/healthz", &[], b"");
    assert_eq!((health.status, health.field("status")), (200, "ok".to_owned()));
    let head = send(collector.addr, "HEAD", "/healthz", &[], b"");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
}

#[test]
fn bodies_over_64_kib_are_refused_before_they_are_read() {
    let collector = Collector::start(&["--allow-anonymous"]);
    let big = vec![b' '; 64 * 1024 + 1];
    let r = send(collector.addr, "POST", "/api/agent/heartbeat", &[("Content-Type", "application/json")], &big);
    r.assert_error(413, "body_too_large", "65536");

    // Announced as 100 MiB but never sent: the answer must come from the header alone.
    let mut stream = TcpStream::connect(collector.addr).unwrap();
    let head = "POST /api/agent/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    read_response(&mut BufReader::new(stream)).unwrap().assert_error(413, "body_too_large", "larger");

    // Chunked, so no length is announced: the cap applies while reading (tiny_http buffers up to
    // 100 KiB, a ping's log; past that it stops reading, and the 64 KiB cap answers).
    let mut stream = TcpStream::connect(collector.addr).unwrap();
    let head = "POST /api/agent/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 110_000, " ".repeat(110_000));
    let _ = stream.write_all(chunk.as_bytes());
    read_response(&mut BufReader::new(stream)).unwrap().assert_error(413, "body_too_large", "larger");
}

#[test]
fn garbage_on_the_wire_does_not_hurt_the_collector() {
    let collector = Collector::start(&["--allow-anonymous"]);
    for junk in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /api/agent/heartbeat HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(collector.addr).unwrap();
        let _ = stream.write_all(junk);
        drop(stream);
    }
    let r = collector.post("/api/agent/heartbeat", &[], &v1_heartbeat(&new_node_id()));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Sockets carry a read timeout (set on the listener, inherited on accept). An idle
/// listener must keep accepting after it; a client that stalls mid-body, or trickles its
/// request a byte at a time, is answered 408 once the timeout has passed since it
/// connected; and meanwhile everyone else is answered.
#[test]
fn idle_periods_and_stalled_clients_do_not_stop_the_collector() {
    let collector = Collector::start(&["--allow-anonymous", "--io-timeout", "1"]);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let r = collector.post("/api/agent/heartbeat", &[], &v1_heartbeat(&new_node_id()));
    assert_eq!(r.status, 200, "after an idle spell: {}", r.body);

    // Bodies are read by the connection's own thread, whatever their size, so a stall
    // there holds up no one else.
    for (announced, sent) in [(500, 10), (5000, 2000), (60_000, 0)] {
        let mut stalled = TcpStream::connect(collector.addr).unwrap();
        let head = format!("POST /api/agent/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {announced}\r\n\r\n");
        stalled.write_all(head.as_bytes()).unwrap();
        stalled.write_all(" ".repeat(sent).as_bytes()).unwrap();
        let r = collector.post("/api/agent/heartbeat", &[], &v1_heartbeat(&new_node_id()));
        assert_eq!(r.status, 200, "while a client stalls: {}", r.body);
        let answer = read_response(&mut BufReader::new(stalled));
        answer.expect("a stalled client is answered").assert_error(408, "request_timeout", "in time");
    }

    // A byte every 200 ms never trips the socket's own timeout; the request's does.
    let mut trickle = TcpStream::connect(collector.addr).unwrap();
    let started = std::time::Instant::now();
    trickle.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
    for byte in b"POST /api/agent/heartbeat HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
        // Stop as soon as the answer is there, as a client would.
        if trickle.write_all(&[*byte]).is_err() || trickle.peek(&mut [0]).is_ok() {
            break;
        }
    }
    trickle.set_read_timeout(None).unwrap();
    let answer = read_response(&mut BufReader::new(trickle));
    answer.expect("a trickling client is answered").assert_error(408, "request_timeout", "in time");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the trickle was never cut off");

    let r = collector.post("/api/agent/heartbeat", &[], &v1_heartbeat(&new_node_id()));
    assert_eq!(r.status, 200, "after a stalled client: {}", r.body);
}

/// Sends raw bytes on a new connection and reads the answer, if any.
fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<Response> {
    exchange(addr, bytes, false)
}

#[test]
fn malformed_requests_get_json_errors_too() {
    let collector = Collector::start(&["--allow-anonymous"]);
    raw(collector.addr, b"\x00garbage\r\n\r\n").unwrap().assert_error(400, "bad_request", "request line");
    raw(collector.addr, b"GET /healthz HTTP/2.0\r\n\r\n").unwrap().assert_error(
        505,
        "http_version_not_supported",
        "HTTP/1.1",
    );
    let many: Vec<u8> = (0..200).flat_map(|i| format!("X-{i}: a\r\n").into_bytes()).collect();
    let request = [&b"GET /healthz HTTP/1.1\r\n"[..], &many, b"\r\n"].concat();
    raw(collector.addr, &request).unwrap().assert_error(431, "header_too_large", "100");
}

/// Requests a hostile probe found closed without an answer, answered wrongly, or held
/// until the read timeout.
#[test]
fn odd_but_answerable_requests_get_a_prompt_answer() {
    let collector = Collector::start(&["--allow-anonymous"]);
    let addr = collector.addr;
    // Versions other than 1.0 and 1.1: 505, in a status line an HTTP/1 client can read.
    for version in ["HTTP/0.9", "HTTP/1.2", "HTTP/2.0", "HTTP/3"] {
        let r = raw(addr, format!("GET /healthz {version}\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        r.assert_error(505, "http_version_not_supported", "HTTP/1.1");
        assert!(r.head.starts_with("HTTP/1.1 505 "), "{version}: {}", r.head);
    }
    // UTF-8 in a header value is allowed (obs-text), and in a path it is a path like any other.
    let r = raw(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: Müller-Bot\r\n\r\n".as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    raw(addr, "GET /café HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes()).unwrap().assert_error(404, "not_found", "");
    // Nothing here upgrades: the request is answered, not held until the client closes.
    let upgrade = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert_eq!(raw(addr, upgrade).unwrap().status, 200);
    // An expectation other than 100-continue: 417, with the JSON body every error has.
    let expect = b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n";
    raw(addr, expect).unwrap().assert_error(417, "expectation_failed", "100-continue");
    // A coding other than chunked is refused, not decoded as chunked.
    let identity = b"POST /api/agent/heartbeat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n{}";
    raw(addr, identity).unwrap().assert_error(501, "not_implemented", "chunked");
    // A chunked body that does not decode: 400, not a silent close.
    let bad =
        b"POST /api/agent/heartbeat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    raw(addr, bad).unwrap().assert_error(400, "bad_request", "chunked");
    // HTTP/1.0 gets no `100 Continue` (RFC 9110): its first answer is the final one.
    let beat = v1_heartbeat(&new_node_id());
    let old = format!(
        "POST /api/agent/heartbeat HTTP/1.0\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n{beat}",
        beat.len()
    );
    assert_eq!(raw(addr, old.as_bytes()).unwrap().status, 200);
}

/// A chunked body with `Expect: 100-continue`: the `100 Continue` comes before the body is
/// sent, so a client that waits for it is not held up.
#[test]
fn a_chunked_body_that_expects_100_continue_gets_it_first() {
    let collector = Collector::start(&["--allow-anonymous"]);
    let mut stream = TcpStream::connect(collector.addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let head = "POST /api/agent/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    let mut first = [0u8; 25];
    std::io::Read::read_exact(&mut stream, &mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n", "{}", String::from_utf8_lossy(&first));
    let beat = v1_heartbeat(&new_node_id());
    stream.write_all(format!("{:x}\r\n{beat}\r\n0\r\n\r\n", beat.len()).as_bytes()).unwrap();
    let answer = read_response(&mut BufReader::new(stream)).expect("an answer after the body");
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// tiny_http 0.12 reads header lines without a limit: one 64 MiB header took the collector
/// from 3 MB to 134 MB. Lines are capped at 8 KiB now.
#[test]
fn a_64_mib_header_is_refused_without_the_memory_it_asks_for() {
    let collector = Collector::start(&["--allow-anonymous"]);
    let request = [&b"GET /healthz HTTP/1.1\r\nX-Big: "[..], &vec![b'a'; 64 << 20], b"\r\n\r\n"].concat();
    raw(collector.addr, &request).unwrap().assert_error(431, "header_too_large", "8 KiB");
    let peak = collector.peak_rss_kib();
    assert!(peak < 32 * 1024, "peak RSS {peak} KiB after a 64 MiB header");
    assert_eq!(send(collector.addr, "GET", "/healthz", &[], b"").status, 200);
}
