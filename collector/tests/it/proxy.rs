//! --trust-proxy cloudflare: CF-Connecting-IP names the client only when the flag says so.

use crate::support::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

/// Enrols with a `CF-Connecting-IP` header and returns the collector's log line about it.
fn logged_enrolment(args: &[&str]) -> String {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("db");
    let mut child = Command::new(collector_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on http://").unwrap().parse().unwrap();
    let token = Command::new(collector_bin()).args(["token", "create", "--data-dir"]).arg(&data).output().unwrap();
    let token = String::from_utf8(token.stdout).unwrap();
    let body = format!(r#"{{"token":"{}","hostname":"edge-node"}}"#, token.trim());
    let headers = [("Content-Type", "application/json"), ("CF-Connecting-IP", "203.0.113.7")];
    assert_eq!(send(addr, "POST", "/api/agents/enroll", &headers, body.as_bytes()).status, 200);
    child.kill().unwrap();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    child.wait().unwrap();
    log.lines()
        .find(|l| l.contains("enrolled from"))
        .unwrap_or_else(|| panic!("no enrolment in the log:\n{log}"))
        .to_owned()
}

#[test]
fn a_spoofed_cf_connecting_ip_changes_nothing_without_trust_proxy() {
    let untrusted = logged_enrolment(&[]);
    assert!(untrusted.contains("from 127.0.0.1 "), "{untrusted}");
    let trusted = logged_enrolment(&["--trust-proxy", "cloudflare"]);
    assert!(trusted.contains("from 203.0.113.7 "), "{trusted}");
}
