//! A TLS terminator on loopback in front of a collector, as Cloudflare's edge is: the
//! agent's HTTPS tests use it, and so does `cargo xtask bench footprint` (through `#[path]`).
//! It serves `fixtures/server.pem` (for `localhost`, signed by `fixtures/ca.pem`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;

/// Starts the terminator on a free loopback port; returns its address.
pub fn start(fixtures: &Path, backend: SocketAddr) -> Result<SocketAddr, String> {
    let read = |name: &str| std::fs::read(fixtures.join(name)).map_err(|e| format!("{name}: {e}"));
    let (cert, key) = (read("server.pem")?, read("server.key")?);
    let certs = rustls_pemfile::certs(&mut &cert[..]).map_err(|e| e.to_string())?;
    let mut keys = rustls_pemfile::pkcs8_private_keys(&mut &key[..]).map_err(|e| e.to_string())?;
    let key = rustls::PrivateKey(keys.pop().ok_or("server.key holds no PKCS#8 key")?);
    let config = rustls::ServerConfig::builder()
        .with_safe_defaults()
        .with_no_client_auth()
        .with_single_cert(certs.into_iter().map(rustls::Certificate).collect(), key)
        .map_err(|e| e.to_string())?;
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || forward(config, stream, backend));
        }
    });
    Ok(addr)
}

/// One request per connection, as the agent sends them: read it whole, relay it, relay the answer.
fn forward(config: Arc<rustls::ServerConfig>, stream: TcpStream, backend: SocketAddr) {
    let Ok(connection) = rustls::ServerConnection::new(config) else { return };
    let mut tls = rustls::StreamOwned::new(connection, stream);
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
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:")?.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    let Ok(mut upstream) = TcpStream::connect(backend) else { return };
    let mut answer = Vec::new();
    if upstream.write_all(&request).and_then(|()| upstream.read_to_end(&mut answer)).is_err() {
        return;
    }
    let _ = tls.write_all(&answer);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
