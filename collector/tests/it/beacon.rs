//! Beacon's master agent and fleet keys: its payload and headers byte for byte as its
//! document gives them, one stable node per device, and what a fleet key may not do.

use crate::support::*;
use std::sync::{Arc, Barrier};

/// The heartbeat body exactly as Beacon's document shows it.
const BEACON_PAYLOAD: &str = hearth_wire::BEACON_EXAMPLE;

fn fleet_key(collector: &Collector, args: &[&str]) -> String {
    let mut all = vec!["fleetkey", "create", "--name", "pi-fleet"];
    all.extend_from_slice(args);
    let key = collector.admin(&all);
    assert!(key.starts_with("usr_"), "Beacon's `cloud login` takes only usr_ keys: {key}");
    key
}

/// Beacon's request as its client sends it: the exact bytes of the body, JSON, and the key
/// as a bearer token, as `X-API-Key`, or both.
fn beacon_beat(collector: &Collector, path: &str, key: &str, how: &str) -> Response {
    let bearer = format!("Bearer {key}");
    let mut headers = vec![("Content-Type", "application/json"), ("User-Agent", "beacon/1.0.0")];
    match how {
        "bearer" => headers.push(("Authorization", &bearer)),
        "x-api-key" => headers.push(("X-API-Key", key)),
        _ => headers.extend([("Authorization", bearer.as_str()), ("X-API-Key", key)]),
    }
    send(collector.addr, "POST", path, &headers, BEACON_PAYLOAD.as_bytes())
}

#[test]
fn beacons_payload_and_headers_work_unchanged_and_keep_one_device_id() {
    let collector = Collector::start(&[]);
    let key = fleet_key(&collector, &["--tags", "pis"]);
    let first = beacon_beat(&collector, "/agent/heartbeat", &key, "both");
    assert_eq!(first.status, 200, "{}", first.body);
    let device_id = first.field("device_id");
    assert_eq!(device_id.len(), 36, "a UUID: {device_id}");
    for (path, how) in
        [("/api/agent/heartbeat", "bearer"), ("/agent/heartbeat", "x-api-key"), ("/api/agent/heartbeat", "both")]
    {
        let r = beacon_beat(&collector, path, &key, how);
        assert_eq!(r.status, 200, "{path} {how}: {}", r.body);
        assert_eq!(r.field("device_id"), device_id, "{path} {how}: the same device keeps its id");
    }
    let api_key = collector.api_key();
    let nodes = collector.get("/api/nodes", &api_key);
    assert_eq!(nodes.status, 200);
    let count = nodes.body.matches("\"node_id\"").count();
    assert_eq!(count, 1, "one device, one node: {}", nodes.body);
    let node = collector.get(&format!("/api/nodes/{device_id}"), &api_key);
    for part in [
        r#""name":"my-homelab-server""#,
        r#""hostname":"my-server""#,
        r#""auth":"fleet_key""#,
        r#""status":"online""#,
        r#""ip_address":"192.168.1.100""#,
        r#""agent_version":"1.0.0""#,
        r#""os":"linux""#,
        r#""arch":"amd64""#,
        r#""metadata":{"role":"beacon-master"}"#,
        // Beacon sends no time of its own: its clock is not judged. It authenticates, by its key.
        r#""clock_skew_secs":null"#,
        r#""timestamp":null"#,
        r#""authenticated":true"#,
        r#""pis""#,
        r#""beacon-master""#,
    ] {
        assert!(node.body.contains(part), "{} lacks {part}", node.body);
    }
    let table = collector.admin(&["nodes"]);
    assert!(table.contains("AUTH") && table.contains("fleet_key") && table.contains(&device_id), "{table}");
    // V1 heartbeats keep working on the same paths.
    let (node_id, token) = collector.enroll();
    for path in ["/api/agent/heartbeat", "/agent/heartbeat"] {
        let r =
            collector.post(path, &[("Authorization", &format!("Bearer {token}"))], &heartbeat(&node_id, 1, "running"));
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.field("node_id"), node_id);
    }
}

/// Beacon sends no interval, and its `heartbeat_interval` may be set to minutes: the
/// collector learns the cadence from the gaps, raises no alarm while it does, and still
/// declares the device offline once it stops, by that cadence.
#[test]
fn a_beacon_set_to_beat_every_five_minutes_never_cries_wolf() {
    let temp = tempfile::tempdir().unwrap();
    let clock = TestClock::new(temp.path());
    let collector = Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &[], &[clock.env()]);
    let key = fleet_key(&collector, &["--ttl", "365d"]); // the test clock is in 2027
    let api_key = collector.api_key();
    let device = beacon_beat(&collector, "/agent/heartbeat", &key, "bearer").field("device_id");
    let node = |what: &str| collector.get(&format!("/api/nodes/{device}"), &api_key).field(what);
    let offline_events = || {
        let events = collector.get(&format!("/api/events?node={device}"), &api_key).body;
        events.matches(r#""kind":"offline""#).count()
    };
    for beat in 1..=4 {
        clock.advance_secs(300);
        collector.wait_for_sweeps(2);
        assert_eq!(offline_events(), 0, "declared offline before heartbeat {beat}, 300 s after the last");
        assert_eq!(beacon_beat(&collector, "/agent/heartbeat", &key, "bearer").status, 200);
        assert_eq!(node("status"), "online");
    }
    let learned = collector.get(&format!("/api/nodes/{device}"), &api_key).body;
    assert!(learned.contains(r#""interval_secs":300,"#), "judged by the cadence it keeps: {learned}");
    // Silent: offline after grace (3 × 300 s) and one interval more, and said once.
    clock.advance_secs(1190);
    collector.wait_for_sweeps(2);
    assert_eq!((node("status"), offline_events()), ("offline".to_owned(), 0), "declared early");
    clock.advance_secs(20);
    collector.wait_for_sweeps(2);
    assert_eq!(offline_events(), 1);
}

#[test]
fn a_fleet_key_reads_nothing_and_once_revoked_its_beats_get_401() {
    let collector = Collector::start(&[]);
    let key = fleet_key(&collector, &[]);
    assert_eq!(beacon_beat(&collector, "/agent/heartbeat", &key, "both").status, 200);
    for path in ["/api/nodes", "/api/auth/me", "/api/fleet-keys", "/api/enrollment-tokens", "/api/audit", "/api/events"]
    {
        collector.get(path, &key).assert_error(403, "forbidden", "fleet key");
        let r = send(collector.addr, "GET", path, &[("X-API-Key", &key)], b"");
        r.assert_error(403, "forbidden", "fleet key");
    }
    let r = collector.post("/api/fleet-keys", &[("X-API-Key", &key)], r#"{"name":"mine"}"#);
    r.assert_error(403, "forbidden", "fleet key");
    let listed = collector.admin(&["fleetkey", "list"]);
    assert!(!listed.contains(&key[4..]), "the list never shows a key: {listed}");
    let id = listed.lines().nth(1).and_then(|l| l.split_whitespace().next()).unwrap().to_owned();
    assert!(listed.contains("1/1000"), "{listed}");
    collector.admin(&["fleetkey", "revoke", &id]);
    beacon_beat(&collector, "/agent/heartbeat", &key, "both").assert_error(401, "key_revoked", "revoked");
    let body = format!(r#"{{"token":"{key}","hostname":"late"}}"#);
    collector.post("/api/agents/enroll", &[], &body).assert_error(401, "key_revoked", "revoked");
    let audit = collector.get("/api/audit", &collector.api_key());
    assert!(audit.body.contains("fleet_key_minted") && audit.body.contains("fleet_key_revoked"), "{}", audit.body);
}

/// A Beacon whose body is broken, or lacks `device_name`, is told what is wrong with the
/// body once its key is checked, not sent to check a good key; its client's small liberties
/// (a lower-case `bearer`, a base URL ending in `/`) reach the route.
#[test]
fn a_beacon_with_a_good_key_and_a_bad_body_hears_about_the_body() {
    let collector = Collector::start(&[]);
    let key = fleet_key(&collector, &[]);
    let with_key = |key: &str, path: &str, body: &str| {
        let bearer = format!("bearer {key}");
        send(
            collector.addr,
            "POST",
            path,
            &[("Content-Type", "application/json"), ("Authorization", &bearer)],
            body.as_bytes(),
        )
    };
    for body in [r#"{"device_name": "x","#, "", "null", "[]", "\u{feff}{}"] {
        let r = with_key(&key, "/agent/heartbeat", body);
        assert_eq!((r.status, r.field("code")), (400, "invalid_json".into()), "{body:?}: {}", r.body);
    }
    with_key(&key, "/agent/heartbeat", "{}").assert_error(400, "invalid_field", "device_name");
    // Without `device_name`, the hostname names the device, as with an empty one.
    let r = with_key(&key, "/api//agent/heartbeat", r#"{"hostname":"only-host"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let node = collector.get(&format!("/api/nodes/{}", r.field("device_id")), &collector.api_key());
    assert_eq!(node.field("name"), "only-host", "{}", node.body);
    // A key that is wrong is still the first thing said, whatever the body.
    let stranger = format!("usr_{}", "0".repeat(43));
    let r = with_key(&stranger, "/agent/heartbeat", r#"{"device_name": "x","#);
    assert_eq!(r.status, 401, "{}", r.body);
    // A fleet key on Hearth's own heartbeat (it names a node) is still refused as such;
    // a `node_id` of null or "" names none.
    let r = with_key(&key, "/agent/heartbeat", &v1_heartbeat(&new_node_id()));
    assert_eq!(r.status, 401, "{}", r.body);
    for body in [r#"{"node_id":null,"device_name":"d1"}"#, r#"{"node_id":"","device_name":"d1"}"#] {
        assert_eq!(with_key(&key, "/agent/heartbeat", body).status, 200, "{body}");
    }
    // An agent token with Beacon's body is told what a Beacon heartbeat needs.
    let (_, token) = collector.enroll();
    with_key(&token, "/agent/heartbeat", BEACON_PAYLOAD).assert_error(401, "unauthorized", "needs a fleet key");
}

/// 50 nodes enrol at once with a key good for 10: exactly 10 get in, each with its own
/// token; the rest are told the key is used up.
#[test]
fn max_uses_is_counted_exactly_under_concurrent_enrolment() {
    let collector = Collector::start(&[]);
    let key = fleet_key(&collector, &["--max-uses", "10"]);
    let barrier = Arc::new(Barrier::new(50));
    let addr = collector.addr;
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let (barrier, key) = (barrier.clone(), key.clone());
            std::thread::spawn(move || {
                let body = format!(r#"{{"token":"{key}","hostname":"pi-{i}"}}"#);
                barrier.wait();
                send(addr, "POST", "/api/agents/enroll", &[("Content-Type", "application/json")], body.as_bytes())
            })
        })
        .collect();
    let answers: Vec<Response> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok: Vec<&Response> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(ok.len(), 10, "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    for refused in answers.iter().filter(|r| r.status != 200) {
        refused.assert_error(410, "key_used_up", "all the 10 nodes");
    }
    let mut tokens: Vec<String> = ok.iter().map(|r| r.field("agent_token")).collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 10, "each node its own agent token");
    let nodes = collector.get("/api/nodes", &collector.api_key());
    assert_eq!(nodes.body.matches(r#""auth":"agent_token""#).count(), 10, "{}", nodes.body);
    assert!(collector.admin(&["fleetkey", "list"]).contains("10/10"));
}

/// A flood of new device names from one key stops at its cap; known devices go on.
#[test]
fn a_flood_of_device_names_stops_at_the_keys_cap() {
    let collector = Collector::start(&[]);
    let key = fleet_key(&collector, &["--max-uses", "3"]);
    let headers = [("Authorization", format!("Bearer {key}"))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    for i in 0..3 {
        let r = collector.post(
            "/agent/heartbeat",
            &headers,
            &BEACON_PAYLOAD.replace("my-homelab-server", &format!("d{i}")),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = collector.post("/agent/heartbeat", &headers, &BEACON_PAYLOAD.replace("my-homelab-server", "d3"));
    r.assert_error(410, "key_used_up", "--max-uses");
    let r = collector.post("/agent/heartbeat", &headers, &BEACON_PAYLOAD.replace("my-homelab-server", "d1"));
    assert_eq!(r.status, 200, "{}", r.body);
    let huge = BEACON_PAYLOAD.replace(r#""role": "beacon-master""#, &format!(r#""role": "{}""#, "x".repeat(5000)));
    collector.post("/agent/heartbeat", &headers, &huge).assert_error(400, "invalid_field", "metadata");
}
