//! The ceiling for the collector's HTTP stack, for `cargo xtask bench`: the same tiny_http
//! (vendored; `respond` closes each connection after its answer), one thread reading each
//! body and answering `ok`, and nothing else: no parsing, no authentication, no store, no fsync.
//!
//! It ignores its arguments, so the benchmark starts it the way it starts the collector,
//! and like the collector it prints `listening on http://ADDR` first.

use std::io::Write;

fn main() {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("cannot listen on 127.0.0.1");
    let addr = server.server_addr().to_ip().expect("a TCP address");
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    for mut request in server.incoming_requests() {
        let mut body = Vec::new();
        let _ = request.as_reader().read_to_end(&mut body);
        let _ = request.respond(tiny_http::Response::from_string("ok"));
    }
}
