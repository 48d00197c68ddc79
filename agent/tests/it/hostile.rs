//! The agent against answers a collector should never give: redirects that would carry
//! the token elsewhere, proxies the plain-http rule refuses, and answers that never end.

use crate::agent::*;
use crate::support::*;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

const TOKEN: &str = "hag_do_not_forward_me";

/// An agent that has a node id and a token, reporting to `url`.
fn agent_with_token(url: &str) -> Agent {
    let agent = Agent::new(url);
    agent.ok(&["init"]);
    std::fs::write(state_path(&agent, "token"), format!("{TOKEN}\n")).unwrap();
    agent
}

/// A server on loopback that reads each request, then answers it with `answer`.
fn scripted(answer: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let length = read_content_length(&mut reader);
                let _ = reader.take(length).read_to_end(&mut Vec::new());
                answer(&mut stream);
            });
        }
    });
    addr
}

/// Runs the agent to its end; returns its exit status, its stderr and its peak RSS in KiB.
#[allow(clippy::zombie_processes, reason = "wait4 reaps the child, which clippy cannot see")]
fn run_measured(command: &mut Command) -> (ExitStatus, String, u64) {
    use std::os::unix::process::ExitStatusExt;
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // A child that hangs (a bound hit where it cannot fail cleanly) is killed, not waited on forever.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (watch, pid) = (done.clone(), child.id() as libc::pid_t);
    std::thread::spawn(move || {
        for _ in 0..600 {
            std::thread::sleep(Duration::from_millis(100));
            if watch.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
        }
        // SAFETY: kill sends a signal; the child is not reaped until `done` is set.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for a child we spawned and have not reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `status` and `usage` outlive the call.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed: {}", std::io::Error::last_os_error());
    (ExitStatus::from_raw(status), reader.join().unwrap(), usage.ru_maxrss as u64)
}

#[test]
fn a_redirect_is_not_followed_and_the_tokens_stay_home() {
    let elsewhere = Receiver::start();
    let target = format!("http://{}", elsewhere.addr);
    let location = format!("{target}/api/agent/heartbeat?via=redirect");
    let redirector = scripted(move |stream| {
        let answer = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = stream.write_all(answer.as_bytes());
    });
    let agent = agent_with_token(&format!("http://{redirector}"));

    let out = agent.run(&["once"]);
    let err = stderr(&out);
    // `once` has ended, so nothing is in flight any more.
    let hits = elsewhere.hits();
    assert!(hits.is_empty(), "the redirect was followed, carrying the agent token: {hits:#?}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    for words in ["307", &target, "HEARTH_COLLECTOR_URL"] {
        assert!(err.contains(words), "the error should name {words:?}: {err}");
    }
    assert!(!err.contains("via=redirect"), "only the scheme and host of the Location belong in the error: {err}");

    let out = agent.run(&["enroll", "--token", "hen_enrolment_secret"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let hits = elsewhere.hits();
    assert!(hits.is_empty(), "the redirect was followed, carrying the enrolment token: {hits:#?}");
    assert!(stderr(&out).contains("307"), "{}", stderr(&out));
}

#[test]
fn plain_http_never_goes_through_a_proxy_the_rule_refuses() {
    let proxy = Receiver::start();
    let agent = agent_with_token("http://127.0.0.1:9");
    // Linux takes 0.0.0.0 to mean this host, so nothing leaves loopback; the plain-http rule
    // sees an address that is neither loopback nor private, as a proxy out on the internet is.
    let via = format!("http://0.0.0.0:{}", proxy.addr.port());
    for name in ["http_proxy", "all_proxy", "ALL_PROXY"] {
        let out = agent.command(&["once"]).env(name, &via).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(name) && err.contains("--allow-insecure-http"), "{name}: {err}");
    }
    let out = agent.command(&["run"]).env("http_proxy", &via).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "`run` should refuse to start: {}", stderr(&out));
    let hits = proxy.hits();
    assert!(hits.is_empty(), "the proxy saw plain-http requests: {hits:#?}");
}

/// A server that answers `prefix` and then bytes without end (up to 64 MiB, then it hangs up).
fn endless(prefix: String) -> SocketAddr {
    scripted(move |stream| {
        if stream.write_all(prefix.as_bytes()).is_err() {
            return;
        }
        let chunk = [b'a'; 64 * 1024];
        for _ in 0..1024 {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
    })
}

#[test]
fn every_part_of_an_endless_answer_is_cut_off() {
    for (part, prefix) in [
        ("status line", "HTTP/1.1 200 "),
        ("header", "HTTP/1.1 200 OK\r\nX-Endless: "),
        // minreq subtracts each header line from what is left of its budget (16 KiB); a line
        // ending in a bare LF, one byte short of the budget, once made that wrap around.
        (
            "header after a budget-sized one",
            &format!("HTTP/1.1 200 OK\r\nX: {}\nX-Endless: ", "a".repeat(16 * 1024 - 4)),
        ),
        ("body", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"),
    ] {
        let agent = agent_with_token(&format!("http://{}", endless(prefix.to_owned())));
        let mut command = agent.command(&["once"]);
        if std::env::var_os("HEARTH_AGENT_RUNNER").is_none() {
            // The server sends 64 MiB; an agent that kept it all would fail to allocate within
            // this (and abort, not exit 1). A bound rather than a measure: the peak RSS wait4
            // reports counts the test process's own, which the child shares until it execs.
            // SAFETY: setrlimit is async-signal-safe and touches only the child's limits.
            unsafe {
                command.pre_exec(|| {
                    let limit = libc::rlimit { rlim_cur: 32 << 20, rlim_max: 32 << 20 };
                    match libc::setrlimit(libc::RLIMIT_DATA, &limit) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                });
            }
        }
        let (status, err, peak_kib) = run_measured(&mut command);
        assert_eq!(status.code(), Some(1), "an endless {part} was taken for an answer: {err}");
        assert!(err.contains("not delivered"), "{part}: {err}");
        assert!(!err.contains("panicked"), "an endless {part} panicked the agent: {err}");
        eprintln!("endless {part}: {} (peak RSS {peak_kib} KiB)", err.trim());
    }
}
