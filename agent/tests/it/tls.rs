//! HTTPS: the agent speaks TLS (rustls) to a terminator in front of the collector, as
//! Cloudflare's edge does, trusting a test CA through SSL_CERT_FILE.

use crate::agent::*;
use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures");

/// Accepts TLS on a loopback port and forwards each request to `backend` in plain HTTP.
fn tls_terminator(backend: SocketAddr) -> SocketAddr {
    let cert = std::fs::read(format!("{FIXTURES}/server.pem")).unwrap();
    let key = std::fs::read(format!("{FIXTURES}/server.key")).unwrap();
    let certs = rustls_pemfile::certs(&mut &cert[..]).unwrap().into_iter().map(rustls::Certificate).collect();
    let key = rustls::PrivateKey(rustls_pemfile::pkcs8_private_keys(&mut &key[..]).unwrap().remove(0));
    let config = rustls::ServerConfig::builder()
        .with_safe_defaults()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || forward(config, stream, backend));
        }
    });
    addr
}

/// One request per connection, as the agent sends them: read it whole, relay it, relay the answer.
fn forward(config: Arc<rustls::ServerConfig>, stream: TcpStream, backend: SocketAddr) {
    let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config).unwrap(), stream);
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = tls.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    let mut upstream = TcpStream::connect(backend).unwrap();
    upstream.write_all(&request).unwrap();
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer).unwrap();
    let _ = tls.write_all(&answer);
    tls.conn.send_close_notify();
    let _ = tls.flush();
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
