//! GET /metrics and /metrics/nodes: Prometheus text that promtool accepts, readable from
//! loopback without a key.

use crate::support::*;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn metrics_pass_promtool_and_describe_the_collector_and_every_node() {
    let collector = Collector::start(&["--allow-anonymous"]);
    let node = new_node_id();
    let body = v1_heartbeat(&node).replace(
        r#""hostname":"pi-zero""#,
        r#""hostname":"pi-zero","name":"say \"hi\"","load":[0.5,0.25,0.125],"memory_mb":512,"uptime_secs":99,
           "checks":[{"name":"cloudflared","ok":false,"detail":"inactive"}]"#,
    );
    assert_eq!(collector.post("/api/agent/heartbeat", &[], &body).status, 200);
    collector.post("/api/agent/heartbeat", &[], "{broken");
    let r = send(collector.addr, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.head.contains("Content-Type: text/plain; version=0.0.4"), "{}", r.head);
    let labels = format!(r#"node_id="{node}",name="say \"hi\"",hostname="pi-zero""#);
    for line in [
        format!("hearth_node_up{{{labels}}} 1"),
        r#"hearth_heartbeats_total{result="accepted"} 1"#.to_owned(),
        r#"hearth_heartbeats_total{result="invalid"} 1"#.to_owned(),
        r#"hearth_nodes{status="online"} 1"#.to_owned(),
        "hearth_alerts_pending 0".to_owned(),
        "hearth_alerts_dropped_total 0".to_owned(),
    ] {
        assert!(r.body.lines().any(|l| l == line), "missing {line}\n{}", r.body);
    }
    for prefix in [
        &format!(r#"hearth_node_last_seen_timestamp_seconds{{node_id="{node}"}} "#),
        "hearth_commit_batch_requests_bucket{",
        "hearth_request_duration_seconds_count ",
        "hearth_commit_duration_seconds_sum ",
        "hearth_flushes_total{how=\"own\"} ",
        "hearth_db_size_bytes ",
    ] {
        assert!(r.body.contains(prefix), "missing {prefix}\n{}", r.body);
    }
    assert!(!r.body.contains("hearth_node_load1"), "per-node facts belong to /metrics/nodes\n{}", r.body);
    promtool_accepts(&r.body);

    // What each node's last heartbeat said is at /metrics/nodes.
    let nodes = send(collector.addr, "GET", "/metrics/nodes", &[], b"");
    assert_eq!(nodes.status, 200, "{}", nodes.body);
    for line in [
        format!(r#"hearth_node_status{{{labels},status="online"}} 1"#),
        format!(r#"hearth_node_status{{{labels},status="offline"}} 0"#),
        format!("hearth_node_load1{{{labels}}} 0.5"),
        format!("hearth_node_memory_bytes{{{labels}}} 536870912"),
        format!("hearth_node_uptime_seconds{{{labels}}} 99"),
        format!(r#"hearth_node_check_ok{{{labels},check="cloudflared"}} 0"#),
    ] {
        assert!(nodes.body.lines().any(|l| l == line), "missing {line}\n{}", nodes.body);
    }
    promtool_accepts(&nodes.body);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // the store's figures refresh each second
    let later = send(collector.addr, "GET", "/metrics", &[], b"");
    assert!(later.body.contains(r#"hearth_db_used_bytes{database="nodes"} "#), "{}", later.body);

    // Through a proxy (cloudflared connects from loopback too; so does nginx on the same
    // host), the metrics need an API key.
    for proxy in [("CF-Connecting-IP", "203.0.113.9"), ("X-Real-IP", "203.0.113.9"), ("Forwarded", "for=203.0.113.9")] {
        let proxied = send(collector.addr, "GET", "/metrics", &[proxy], b"");
        proxied.assert_error(401, "unauthorized", "API key");
    }
    let key = collector.api_key();
    let with_key = send(
        collector.addr,
        "GET",
        "/metrics",
        &[("X-Forwarded-For", "203.0.113.9"), ("Authorization", &format!("Bearer {key}"))],
        b"",
    );
    assert_eq!(with_key.status, 200);
}

/// Runs `promtool check metrics`. CI installs it (Debian's `prometheus` package); a developer
/// machine without it is told so, rather than failing.
fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(_) if std::env::var_os("CI").is_none() => {
            eprintln!("promtool not found (apt-get install prometheus); skipping its check of /metrics");
            return;
        }
        Err(e) => panic!("promtool is needed in CI: {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics complained:\n{said}");
}

/// The alerting rules shipped in `docs/prometheus/` pass their own `promtool test rules`
/// (a stopped node and its stale checks page nobody), and every Hearth metric they (or
/// their commented alternative) name is one a collector serves: a renamed metric would
/// leave a rule that never fires.
#[test]
fn the_shipped_prometheus_rules_pass_their_tests_and_name_served_metrics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/prometheus");
    match Command::new("promtool").args(["test", "rules", "hearth-rules.test.yml"]).current_dir(&dir).output() {
        Ok(out) => assert!(
            out.status.success(),
            "promtool test rules failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) if std::env::var_os("CI").is_none() => eprintln!("promtool not found; skipping the rules' own tests"),
        Err(e) => panic!("promtool is needed in CI: {e}"),
    }

    // A node enrolled and never heard from is declared down after --pending-alert-secs, and
    // a job that pinged /fail is down: both are in /metrics as the rules read them.
    let collector = Collector::start(&["--allow-anonymous", "--pending-alert-secs", "1"]);
    let (silent, _) = collector.enroll();
    let body = v1_heartbeat(&new_node_id())
        .replace(r#""hostname":"pi-zero""#, r#""hostname":"pi-zero","checks":[{"name":"disk","ok":true}]"#);
    assert_eq!(collector.post("/api/agent/heartbeat", &[], &body).status, 200);
    let auth = format!("Bearer {}", collector.api_key());
    let job = collector.post("/api/jobs", &[("Authorization", &auth)], r#"{"name":"backup","period_secs":3600}"#);
    assert_eq!(job.status, 201, "{}", job.body);
    let uuid = job.field("ping_url").rsplit('/').next().unwrap().to_owned();
    assert_eq!(send(collector.addr, "POST", &format!("/ping/{uuid}/fail"), &[], b"").status, 200);
    let node_down = format!(r#"hearth_node_down_since_timestamp_seconds{{node_id="{silent}","#);
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = send(collector.addr, "GET", "/metrics", &[], b"").body;
        if metrics.contains(&node_down) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(metrics.contains(&node_down), "{metrics}");
    let job_down = format!(r#"hearth_job_down_since_timestamp_seconds{{job_id="{}",job="backup"}} "#, job.field("id"));
    assert!(metrics.contains(&job_down), "{metrics}");
    assert_eq!(metrics.matches("_down_since_timestamp_seconds{").count(), 2, "only what is down: {metrics}");
    promtool_accepts(&metrics);
    let served = metrics + &send(collector.addr, "GET", "/metrics/nodes", &[], b"").body;
    let rules = std::fs::read_to_string(dir.join("hearth-rules.yml")).unwrap();
    let named: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("hearth_"))
        .collect();
    assert!(named.len() >= 5, "{named:?}");
    for metric in named {
        assert!(served.contains(&format!("# TYPE {metric} ")), "{metric} is not served");
    }
}
