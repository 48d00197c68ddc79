//! HTTPS: the agent speaks TLS (rustls) to a terminator in front of the collector, as
//! Cloudflare's edge does, trusting a test CA through SSL_CERT_FILE.

use crate::agent::*;
use crate::edge;
use crate::support::*;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures");

/// Accepts TLS on a loopback port (the fixtures' certificate for `localhost`) and
/// forwards each request to `backend` in plain HTTP.
fn tls_terminator(backend: SocketAddr) -> SocketAddr {
    edge::start(std::path::Path::new(FIXTURES), backend).unwrap()
}

#[test]
fn enrolment_and_heartbeats_travel_over_https_with_a_trusted_ca() {
    let collector = Collector::start(&[]);
    let edge = tls_terminator(collector.addr);
    let agent = Agent::new(&format!("https://localhost:{}", edge.port()));
    let ca = format!("{FIXTURES}/ca.pem");
    let with_ca = |args: &[&str]| {
        let out = agent
            .command(args)
            .env("SSL_CERT_FILE", &ca)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    with_ca(&["enroll", "--token", &collector.enroll_token()]);
    with_ca(&["once"]);
    assert_eq!(node_view(&collector, &agent.node_id()).field("status"), "online");
}

#[test]
fn a_certificate_from_an_unknown_ca_is_refused() {
    let collector = Collector::start(&[]);
    let edge = tls_terminator(collector.addr);
    let agent = Agent::new(&format!("https://localhost:{}", edge.port()));
    let empty_store = agent.state.path().join("no-ca.pem");
    std::fs::write(&empty_store, "").unwrap();
    let out = agent
        .command(&["enroll", "--token", &collector.enroll_token()])
        .env("SSL_CERT_FILE", &empty_store)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
}

/// A CONNECT proxy on loopback; returns its address and a count of tunnels it opened.
fn connect_proxy() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tunnels = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = tunnels.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(client.try_clone().unwrap());
                let mut line = String::new();
                std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
                let target =
                    line.strip_prefix("CONNECT ").and_then(|rest| rest.split_whitespace().next()).unwrap().to_owned();
                loop {
                    let mut header = String::new();
                    std::io::BufRead::read_line(&mut reader, &mut header).unwrap();
                    if header == "\r\n" {
                        break;
                    }
                }
                let upstream = TcpStream::connect(target.replace("localhost", "127.0.0.1")).unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut client_out = client.try_clone().unwrap();
                client_out.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").unwrap();
                let (mut up_in, mut up_out) = (upstream.try_clone().unwrap(), upstream);
                let to_client = std::thread::spawn(move || std::io::copy(&mut up_in, &mut client_out));
                let _ = std::io::copy(&mut reader, &mut up_out);
                let _ = up_out.shutdown(std::net::Shutdown::Write);
                let _ = to_client.join();
            });
        }
    });
    (addr, tunnels)
}

#[test]
fn https_proxy_is_honoured_in_upper_case_too() {
    let collector = Collector::start(&[]);
    let edge = tls_terminator(collector.addr);
    let (proxy, tunnels) = connect_proxy();
    let agent = Agent::new(&format!("https://localhost:{}", edge.port()));
    let out = agent
        .command(&["enroll", "--token", &collector.enroll_token()])
        .env("SSL_CERT_FILE", format!("{FIXTURES}/ca.pem"))
        .env_remove("https_proxy")
        .env("HTTPS_PROXY", format!("http://{proxy}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(tunnels.load(std::sync::atomic::Ordering::SeqCst), 1, "the enrolment did not go through the proxy");
}
