//! Who watches the collector: `--watchdog-url` pings and Alertmanager's HearthWatchdog.

use crate::support::*;

/// A healthy collector pings its watchdog URL every `--watchdog-secs`, and keeps an
/// always-firing HearthWatchdog alert at an Alertmanager channel with `watchdog = true`;
/// neither the URL's secret path nor its password reaches the log.
#[test]
fn a_healthy_collector_pings_its_watchdog_and_keeps_hearth_watchdog_firing() {
    let temp = tempfile::tempdir().unwrap();
    let pinged = Receiver::start();
    let am = Receiver::start();
    let conf = temp.path().join("alerts.conf");
    let channels =
        format!("[channel am]\ntype = alertmanager\nurl = http://hearth:secret@{}\nwatchdog = true\n", am.addr);
    std::fs::write(&conf, channels).unwrap();
    let url = format!("http://wd:pw-secret@{}/ping/6f1c5e9e-secret", pinged.addr);
    let args = ["--watchdog-url", url.as_str(), "--watchdog-secs", "1", "--alerts", conf.to_str().unwrap()];
    let log = temp.path().join("collector.log");
    let c = Collector::start_logged("127.0.0.1:0", &temp.path().join("db"), &args, &[], Some(&log));
    let pings = pinged.wait_for(2);
    assert!(pings.iter().all(|h| h.head.starts_with("GET /ping/6f1c5e9e-secret ")), "{pings:#?}");
    // `user:password@` is sent as Basic credentials, as for channels, not looked up as a host.
    assert!(pings[0].head.contains("Authorization: Basic d2Q6cHctc2VjcmV0"), "{}", pings[0].head);
    let posts = am.wait_for(2);
    let alert = &posts[0];
    assert_eq!(alert.path, "/api/v2/alerts");
    assert!(alert.body.contains(r#""alertname":"HearthWatchdog""#), "{}", alert.body);
    assert!(alert.head.contains("Authorization: Basic aGVhcnRoOnNlY3JldA=="), "{}", alert.head);
    // The same alert each round (one startsAt), each lasting a few rounds past its post.
    let starts = |body: &str| body.split(r#""startsAt":""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert_eq!(starts(&posts[0].body), starts(&posts[1].body));
    drop(c);
    let logged = std::fs::read_to_string(log).unwrap();
    assert!(!logged.contains("secret"), "{logged}");
}

/// A watchdog URL that could never be reached is a usage error, not a silent no-op (or an
/// outside dead-man's switch paging that a healthy collector is dead), and the error does
/// not repeat its secrets.
#[test]
fn a_watchdog_url_must_be_one_that_can_be_reached() {
    for (url, says) in [
        ("ftp://example.invalid/x", "must start with https://"),
        ("https://hc.example:99999/ping/s3cret", "no valid port"),
        ("https://user:s3cret@hc example/ping/x", "no valid host name"),
    ] {
        let out = std::process::Command::new(collector_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--watchdog-url", url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains("--watchdog-url: ") && stderr.contains(says), "{url}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}

/// `watchdog = true` belongs to alertmanager channels; elsewhere it is a mistake in the file.
#[test]
fn watchdog_is_only_for_alertmanager_channels() {
    let temp = tempfile::tempdir().unwrap();
    let conf = temp.path().join("alerts.conf");
    std::fs::write(&conf, "[channel hook]\ntype = webhook\nurl = http://127.0.0.1:1/x\nwatchdog = true\n").unwrap();
    let out = std::process::Command::new(collector_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--alerts", conf.to_str().unwrap(), "--data-dir"])
        .arg(temp.path().join("db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("watchdog = true is for alertmanager"));
}
