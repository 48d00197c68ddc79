//! `GET /api/nodes?changed_since=CURSOR`: a dashboard's refresh fetches only the nodes that
//! changed since its last one, whether a heartbeat, an edit or time alone changed them.

use crate::support::*;
use miniserde::json::Value;

fn beat(node: &str) -> String {
    let v1 = v1_heartbeat(node);
    format!(r#"{},"interval_secs":10}}"#, &v1[..v1.len() - 1])
}

/// The node ids and statuses of an answer, its cursor, total and next.
fn listed(response: &Response) -> (Vec<(String, String)>, String, u64, Option<String>) {
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    let Some(Value::Array(nodes)) = body.get("nodes") else { panic!("{}", response.body) };
    let nodes = nodes
        .iter()
        .map(|n| match n {
            Value::Object(o) => match (o.get("node_id"), o.get("status")) {
                (Some(Value::String(id)), Some(Value::String(status))) => (id.clone(), status.clone()),
                _ => panic!("{}", response.body),
            },
            _ => panic!("{}", response.body),
        })
        .collect();
    let total = match body.get("total") {
        Some(Value::Number(miniserde::json::Number::U64(n))) => *n,
        other => panic!("total: {other:?}"),
    };
    let next = match body.get("next") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    (nodes, response.field("cursor"), total, next)
}

#[test]
fn a_refresh_gets_only_what_changed_since_the_last() {
    let temp = tempfile::tempdir().unwrap();
    let clock = TestClock::new(temp.path());
    let collector =
        Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &["--allow-anonymous"], &[clock.env()]);
    let key = collector.api_key();
    let mut ids = [new_node_id(), new_node_id(), new_node_id()];
    ids.sort();
    let [a, b, c] = ids.clone();
    for id in &ids {
        assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(id)).status, 200);
    }
    clock.advance_secs(6);
    let (all, cursor, total, _) = listed(&collector.get("/api/nodes", &key));
    assert_eq!((all.len(), total), (3, 3));

    // One heartbeat: that node alone.
    clock.advance_secs(4);
    assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(&a)).status, 200);
    let (changed, cursor_2, _, _) = listed(&collector.get(&format!("/api/nodes?changed_since={cursor}"), &key));
    assert_eq!(changed, [(a.clone(), "online".to_owned())]);

    // Time alone: the other two turn late at 15 s of silence.
    clock.advance_secs(10);
    let (changed, cursor_3, _, _) = listed(&collector.get(&format!("/api/nodes?changed_since={cursor_2}"), &key));
    let late: Vec<_> = changed.iter().filter(|(_, s)| s == "late").map(|(id, _)| id.clone()).collect();
    assert_eq!(late, [b.clone(), c.clone()], "{changed:?}");

    // Nothing happened: nothing comes (past the cursor's few seconds of overlap).
    for id in &ids {
        assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(id)).status, 200);
    }
    clock.advance_secs(6);
    let (_, cursor_4, _, _) = listed(&collector.get(&format!("/api/nodes?changed_since={cursor_3}"), &key));
    clock.advance_secs(4);
    let (quiet, _, _, _) = listed(&collector.get(&format!("/api/nodes?changed_since={cursor_4}"), &key));
    assert!(quiet.is_empty(), "{quiet:?}");

    // The cursor reaches back only as far as a write could still be committing (two
    // seconds here): heartbeats three seconds before an answer do not come again after it.
    for id in &ids {
        assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(id)).status, 200);
    }
    clock.advance_secs(3);
    let (again, cursor_5, _, _) = listed(&collector.get(&format!("/api/nodes?changed_since={cursor_4}"), &key));
    assert_eq!(again.len(), 3, "{again:?}");
    let (quiet, _, _, _) = listed(&collector.get(&format!("/api/nodes?changed_since={cursor_5}"), &key));
    assert!(quiet.is_empty(), "the heartbeats came twice: {quiet:?}");

    // Pages, as without it; and `total` tells a client of a deletion.
    clock.advance_secs(30);
    let (first, _, _, next) = listed(&collector.get(&format!("/api/nodes?changed_since={cursor_4}&limit=1"), &key));
    assert_eq!(first.len(), 1);
    let next = next.expect("a next page");
    let (second, _, _, _) =
        listed(&collector.get(&format!("/api/nodes?changed_since={cursor_4}&limit=1&after={next}"), &key));
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);
    let auth = format!("Bearer {key}");
    assert_eq!(
        send(collector.addr, "DELETE", &format!("/api/nodes/{c}"), &[("Authorization", &auth)], b"").status,
        200
    );
    let (_, _, total, _) = listed(&collector.get(&format!("/api/nodes?changed_since={cursor_4}"), &key));
    assert_eq!(total, 2);
    collector.get("/api/nodes?changed_since=yesterday", &key).assert_error(400, "invalid_query", "cursor");
}

/// A dashboard that saw a node `offline` (past its grace, not yet declared) before the
/// collector restarted gets it again after the restart, now `late`: its status counts
/// silence from the new start, so a refresh from before the start gets every node.
#[test]
fn a_refresh_from_before_a_restart_gets_every_node() {
    let temp = tempfile::tempdir().unwrap();
    let clock = TestClock::new(temp.path());
    let dir = temp.path().join("db");
    let mut collector = Collector::start_with_env("127.0.0.1:0", &dir, &["--allow-anonymous"], &[clock.env()]);
    let key = collector.api_key();
    let node = new_node_id();
    assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(&node)).status, 200);
    clock.advance_secs(35); // past its grace (30 s), before its minimum down time (10 s) ends
    let (seen, cursor, _, _) = listed(&collector.get("/api/nodes", &key));
    assert_eq!(seen, [(node.clone(), "offline".to_owned())]);
    collector.kill9();

    clock.advance_secs(5);
    let collector = Collector::start_with_env("127.0.0.1:0", &dir, &["--allow-anonymous"], &[clock.env()]);
    let (changed, _, _, _) = listed(&collector.get(&format!("/api/nodes?changed_since={cursor}"), &key));
    assert_eq!(changed, [(node, "late".to_owned())]);
}
