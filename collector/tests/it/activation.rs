//! Listening on a Unix socket, socket activation, and scaling to zero with --idle-exit.

use crate::support::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_collector_listens_on_a_unix_socket() {
    let temp = tempfile::tempdir().unwrap();
    let socket = temp.path().join("collector.sock");
    std::fs::write(&socket, "").unwrap_or_default();
    std::fs::remove_file(&socket).unwrap();
    let mut child = Command::new(collector_bin())
        .args(["serve", "--allow-anonymous", "--listen", &format!("unix:{}", socket.display()), "--data-dir"])
        .arg(temp.path().join("db"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("listening on unix:{}", socket.display()));
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let body = v1_heartbeat(&new_node_id());
    let request = format!("POST /api/agent/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).unwrap();
    let response = read_response(&mut BufReader::new(stream)).unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Starts the collector as systemd would for a socket unit: the listening socket as fd 3,
/// LISTEN_FDS=1 and LISTEN_PID set to the collector's own pid.
fn activate(listener: &TcpListener, data_dir: &std::path::Path, args: &[&str]) -> (Child, String) {
    let fd = listener.as_raw_fd();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@""#)
        .arg(collector_bin())
        .args(["serve", "--allow-anonymous", "--listen", "127.0.0.1:1", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only dup2 and fcntl, which are async-signal-safe, run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0); // keep it across exec
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line.trim().to_owned())
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_socket_activated_collector_scales_to_zero_and_loses_no_request() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("db");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap(); // the socket systemd would hold
    let addr = listener.local_addr().unwrap();

    let (mut first, said) = activate(&listener, &data, &["--idle-exit", "1"]);
    assert_eq!(said, format!("listening on http://{addr}"), "the passed socket must be used, not --listen");
    let node = new_node_id();
    let r = send(
        addr,
        "POST",
        "/api/agent/heartbeat",
        &[("Content-Type", "application/json")],
        heartbeat(&node, 1, "stopping").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let status =
        wait_exit(&mut first, Duration::from_secs(15)).expect("an idle collector with nothing to watch should exit");
    assert!(status.success(), "{status}");

    // Nobody is listening now, but the socket is: this heartbeat waits in its backlog.
    let client = std::thread::spawn(move || {
        let sent = Instant::now();
        let r = send(
            addr,
            "POST",
            "/api/agent/heartbeat",
            &[("Content-Type", "application/json")],
            heartbeat(&node, 2, "stopping").as_bytes(),
        );
        (r.status, sent.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (mut second, _) = activate(&listener, &data, &["--idle-exit", "1"]);
    let (status, waited) = client.join().unwrap();
    assert_eq!(status, 200, "the heartbeat sent while the collector was down was lost");
    eprintln!(
        "activation: answered {:?} after the collector was started ({:?} after the client sent)",
        started.elapsed(),
        waited
    );
    assert!(wait_exit(&mut second, Duration::from_secs(15)).is_some_and(|s| s.success()));
}

#[test]
fn a_collector_watching_a_node_does_not_scale_to_zero() {
    let temp = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (mut child, _) = activate(&listener, &temp.path().join("db"), &["--idle-exit", "1"]);
    let r = send(
        addr,
        "POST",
        "/api/agent/heartbeat",
        &[("Content-Type", "application/json")],
        heartbeat(&new_node_id(), 1, "running").as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(
        wait_exit(&mut child, Duration::from_secs(3)).is_none(),
        "it exited while a node it must watch could go silent"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A connection that waited in the socket's backlog before the collector started (so it
/// never inherited the listener's timeouts) and then sends nothing is still cut off.
#[test]
fn a_silent_connection_from_the_backlog_is_cut_off_at_the_read_timeout() {
    let temp = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap(); // the socket systemd would hold
    let silent = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut collector, _) = activate(&listener, &temp.path().join("db"), &["--io-timeout", "1"]);
    let waited = Instant::now();
    let mut answer = String::new();
    let read = std::io::Read::read_to_string(&mut &silent, &mut answer);
    let _ = collector.kill();
    let _ = collector.wait();
    assert!(read.is_ok(), "the connection was not closed within 20 s: {read:?}");
    assert!(answer.contains(" 408 ") && answer.contains("request_timeout"), "{answer}");
    assert!(waited.elapsed() < Duration::from_secs(10), "cut off after {:?}", waited.elapsed());
}

/// A second `serve` on the data directory of one running is refused, saying so: two would
/// both watch the nodes and send alerts. Once the first is gone, the directory is free.
#[test]
fn a_second_collector_on_the_same_store_is_refused() {
    let mut first = Collector::start(&[]);
    let dir = first.data_dir.clone();
    let serve = || {
        std::process::Command::new(collector_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--idle-exit", "1", "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let out = serve();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("another hearth-collector serve is running on"), "{said}");
    first.kill9();
    assert!(serve().status.success(), "the store is free once the first is gone");
}
