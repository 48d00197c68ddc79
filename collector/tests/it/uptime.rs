//! Uptime history end to end: a node killed for 10 minutes, on a test clock, shows a
//! matching outage and the right ratios in the API, the node list and `/metrics/nodes`.

use crate::support::*;
use miniserde::json::{Number, Object, Value};

const S: i64 = 1000;

/// A heartbeat every 10 s, running or stopping.
fn beat(node: &str, state: &str) -> String {
    let v1 = v1_heartbeat(node);
    format!(r#"{},"interval_secs":10,"state":"{state}","name":"attic-pi"}}"#, &v1[..v1.len() - 1])
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(Number::F64(f)) => Some(*f),
        Value::Number(Number::U64(u)) => Some(*u as f64),
        Value::Number(Number::I64(i)) => Some(*i as f64),
        _ => None,
    }
}

fn object(value: Option<&Value>) -> &Object {
    match value {
        Some(Value::Object(o)) => o,
        other => panic!("not an object: {other:?}"),
    }
}

fn array(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(a)) => a,
        other => panic!("not an array: {other:?}"),
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Waits (bounded) until the sweep has declared the node offline.
fn wait_until_declared_offline(collector: &Collector, key: &str, node: &str) {
    for _ in 0..200 {
        if text(collector.get(&format!("/api/nodes/{node}"), key).json().get("down_since")).is_some() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("node {node} was never declared offline");
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn a_node_killed_for_ten_minutes_shows_a_matching_outage_and_the_right_ratios() {
    let temp = tempfile::tempdir().unwrap();
    let clock = TestClock::new(temp.path());
    let collector =
        Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &["--allow-anonymous"], &[clock.env()]);
    let key = collector.api_key();
    let (node, start) = (new_node_id(), clock.now_ms());
    let send = |state: &str| assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(&node, state)).status, 200);
    send("running");
    clock.advance_secs(10);
    send("running");
    // Killed right after that heartbeat: the next one, due at 20 s, never comes.
    clock.advance_secs(60);
    wait_until_declared_offline(&collector, &key, &node);
    let during = collector.get(&format!("/api/nodes/{node}/uptime"), &key).json();
    let ongoing = object(array(during.get("outages")).first());
    assert_eq!(text(ongoing.get("end")), None, "an outage still going has no end");
    clock.set(start + 610 * S);
    send("running"); // back, ten minutes after it was killed
    clock.set(start + 3610 * S);
    send("stopping"); // a clean stop is not held against it
    clock.set(start + 7210 * S);
    send("running");

    let uptime = collector.get(&format!("/api/nodes/{node}/uptime"), &key);
    assert_eq!(uptime.status, 200, "{}", uptime.body);
    let body = uptime.json();
    let outages = array(body.get("outages"));
    assert_eq!(outages.len(), 2, "{}", uptime.body);
    let (stop, outage) = (object(outages.first()), object(outages.get(1)));
    assert_eq!(text(stop.get("cause")).as_deref(), Some("stopped"));
    assert_eq!(number(stop.get("duration_secs")), Some(3600.0));
    assert_eq!(text(outage.get("cause")).as_deref(), Some("offline"));
    assert_eq!(text(outage.get("start")), Some(hearth_wire::format_rfc3339(start + 20 * S)));
    assert_eq!(text(outage.get("end")), Some(hearth_wire::format_rfc3339(start + 610 * S)));
    assert_eq!(
        number(outage.get("duration_secs")),
        Some(590.0),
        "from the heartbeat that did not come to the one that did"
    );

    // Counted: 7,210 s since the first heartbeat, less the hour stopped; down 590 s of it.
    let expected = 1.0 - 590.0 / 3610.0;
    let ratios = object(body.get("ratios"));
    for window in ["24h", "7d", "30d", "90d"] {
        let got = number(ratios.get(window)).unwrap_or_else(|| panic!("no {window} ratio in {}", uptime.body));
        assert!(close(got, expected), "{window}: {got}, expected {expected}");
    }
    let days = array(body.get("days"));
    assert_eq!(days.len(), 90);
    assert_eq!(number(object(days.first()).get("ratio")), None, "a day before the first heartbeat counts for nothing");

    let list = collector.get("/api/nodes", &key).json();
    let listed = object(array(list.get("nodes")).first());
    for field in ["uptime_24h", "uptime_30d"] {
        assert!(number(listed.get(field)).is_some_and(|r| close(r, expected)), "{field} in the node list");
    }
    let metrics = collector.get("/metrics/nodes", "");
    let line = metrics
        .body
        .lines()
        .find(|l| l.starts_with("hearth_node_uptime_ratio{") && l.contains(r#"window="30d""#))
        .unwrap_or_else(|| panic!("no 30-day ratio in /metrics/nodes:\n{}", metrics.body));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((value - expected).abs() < 1e-4, "{line}");

    // A node that never failed has a full ratio and no outage.
    let steady = new_node_id();
    assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(&steady, "running")).status, 200);
    clock.advance_secs(5);
    let steady_uptime = collector.get(&format!("/api/nodes/{steady}/uptime"), &key).json();
    assert!(array(steady_uptime.get("outages")).is_empty());
    assert_eq!(number(object(steady_uptime.get("ratios")).get("24h")), Some(1.0));
    assert_eq!(collector.get("/api/nodes/nope/uptime", &key).status, 404);
}
