//! How a node is stored: a compact binary record instead of JSON.
//!
//! A node is the one record every heartbeat rewrites and every fleet-wide read decodes,
//! and as JSON it was 1.3 KB, mostly field names and nulls. Here each field that has a
//! value is a key (field number and wire type, as in protobuf) followed by its value;
//! absent fields take no space, unknown fields are skipped, so fields can be added the way
//! the wire contract adds them: new numbers, never reused. The first byte is `FORMAT`;
//! records stored as JSON by earlier versions start with `{` and are still read.
//!
//! Wire types: 0 an unsigned varint (integers, booleans; signed ones zigzagged), 1 eight
//! bytes (an f64), 2 a length and that many bytes (strings, nested records). A list is
//! one field per element; an empty list that was there is told apart from no list by a
//! count field written before the elements.

use crate::model::{EnrolledFacts, NodeRecord};
use hearth_wire::{Check, Heartbeat, State};

const FORMAT: u8 = 1;

pub fn encode_node(node: &NodeRecord) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(512));
    w.0.push(FORMAT);
    w.str(1, &node.node_id);
    w.str(2, &node.name);
    w.str(3, &node.hostname);
    w.strings(4, 5, Some(&node.tags));
    w.int(6, node.enrolled_at);
    w.opt_int(7, node.last_seen);
    w.opt_int(8, node.clock_skew_secs);
    match node.token_hash.as_deref().map(|hex| (hex, crate::secret::unhex32(hex))) {
        Some((_, Some(raw))) => w.bytes(9, &raw),
        Some((hex, None)) => w.str(10, hex),
        None => {}
    }
    let facts = &node.enrolled_with;
    if *facts != EnrolledFacts::default() {
        w.nested(11, |w| {
            w.opt_str(1, facts.os.as_deref());
            w.opt_str(2, facts.arch.as_deref());
            w.opt_str(3, facts.agent_version.as_deref());
            w.opt_uint(4, facts.cpu_cores);
            w.opt_uint(5, facts.memory_mb);
            w.opt_uint(6, facts.disk_gb);
        });
    }
    if let Some(hb) = &node.heartbeat {
        w.nested(12, |w| heartbeat(w, hb, &node.node_id));
    }
    w.opt_uint(13, node.grace_secs);
    w.opt_uint(14, node.interval_override);
    w.opt_int(15, node.edited_at);
    w.opt_int(16, node.down_since);
    w.opt_int(17, node.reminded_at);
    w.opt_int(18, node.deadline);
    w.opt_uint(19, node.flips);
    w.opt_int(20, node.flip_window);
    w.opt_int(21, node.flapping_since);
    w.opt_str(22, node.fleet_key.as_deref());
    w.opt_str(23, node.metadata.as_deref());
    w.opt_int(24, node.first_seen);
    w.opt_int(25, node.down_from);
    w.opt_int(26, node.acked_at);
    w.opt_int(27, node.held_since);
    w.opt_uint(28, node.cadence_secs);
    w.0
}

fn heartbeat(w: &mut Writer, hb: &Heartbeat, node_id: &str) {
    // Its node id is the record's, always; it is written only if that ever changes.
    if hb.node_id != node_id {
        w.str(1, &hb.node_id);
    }
    w.str(2, &hb.hostname);
    w.str(3, &hb.os_profile);
    w.uint(4, u64::from(hb.cloudflare_ok));
    w.uint(5, u64::from(hb.services_ok));
    w.str(6, &hb.vaultmesh_root);
    w.str(7, &hb.timestamp);
    w.opt_str(8, hb.name.as_deref());
    w.opt_str(9, hb.agent_version.as_deref());
    w.opt_str(10, hb.os.as_deref());
    w.opt_str(11, hb.arch.as_deref());
    w.opt_str(12, hb.kernel.as_deref());
    w.strings(13, 14, hb.tags.as_ref());
    w.opt_str(15, hb.ip_address.as_deref());
    w.strings(16, 17, hb.ip_addresses.as_ref());
    w.opt_uint(18, hb.cpu_cores);
    w.opt_uint(19, hb.memory_mb);
    w.opt_uint(20, hb.disk_gb);
    w.opt_uint(21, hb.mem_available_mb);
    w.opt_uint(22, hb.disk_free_gb);
    if let Some(load) = &hb.load {
        w.uint(23, load.len() as u64);
        for value in load {
            w.float(24, *value);
        }
    }
    w.opt_uint(25, hb.uptime_secs);
    w.opt_str(26, hb.boot_id.as_deref());
    w.opt_uint(27, hb.seq);
    w.opt_uint(28, hb.interval_secs);
    if let Some(checks) = &hb.checks {
        w.uint(29, checks.len() as u64);
        for check in checks {
            w.nested(30, |w| {
                w.str(1, &check.name);
                w.uint(2, u64::from(check.ok));
                w.str(3, &check.detail);
            });
        }
    }
    match hb.state {
        Some(State::Running) => w.uint(31, 1),
        Some(State::Stopping) => w.uint(31, 2),
        None => {}
    }
}

/// Decodes a stored node, binary or (from earlier versions) JSON; `None` if damaged.
pub fn decode_node(bytes: &[u8]) -> Option<NodeRecord> {
    match bytes.split_first()? {
        (&FORMAT, rest) => node_with(rest, Part::All),
        (b'{', _) => miniserde::json::from_str(std::str::from_utf8(bytes).ok()?).ok(),
        _ => None,
    }
}

/// Decodes only what a node's status needs: its id, name, hostname, times, interval and
/// grace, and of its heartbeat only `interval_secs` and `state`. For fleet-wide reads
/// (`/metrics`), a few times faster than `decode_node`; never to be stored back.
/// With `tags`, its tags and those its heartbeat reported too (for asking whether a window
/// or silence scoped by tag covers it).
pub fn decode_node_status(bytes: &[u8], tags: bool) -> Option<NodeRecord> {
    match bytes.split_first()? {
        (&FORMAT, rest) => node_with(rest, if tags { Part::StatusAndTags } else { Part::Status }),
        _ => decode_node(bytes),
    }
}

/// How much of a record to decode.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    All,
    Status,
    StatusAndTags,
}

fn node_with(bytes: &[u8], part: Part) -> Option<NodeRecord> {
    let mut node = NodeRecord::default();
    let mut tags = Vec::new();
    for field in Reader(bytes) {
        let field = field?;
        let wanted = match part {
            Part::All => true,
            Part::Status => !matches!(field.0, 4 | 5 | 9 | 10 | 11 | 23),
            Part::StatusAndTags => !matches!(field.0, 4 | 9 | 10 | 11 | 23),
        };
        if !wanted {
            continue;
        }
        match field {
            (1, Value::Bytes(v)) => node.node_id = text(v)?,
            (2, Value::Bytes(v)) => node.name = text(v)?,
            (3, Value::Bytes(v)) => node.hostname = text(v)?,
            (5, Value::Bytes(v)) => tags.push(text(v)?),
            (6, Value::Varint(v)) => node.enrolled_at = unzigzag(v),
            (7, Value::Varint(v)) => node.last_seen = Some(unzigzag(v)),
            (8, Value::Varint(v)) => node.clock_skew_secs = Some(unzigzag(v)),
            (9, Value::Bytes(v)) => node.token_hash = Some(crate::secret::hex(v)),
            (10, Value::Bytes(v)) => node.token_hash = Some(text(v)?),
            (11, Value::Bytes(v)) => node.enrolled_with = facts(v)?,
            (12, Value::Bytes(v)) => node.heartbeat = Some(heartbeat_from(v, part)?),
            (13, Value::Varint(v)) => node.grace_secs = Some(v),
            (14, Value::Varint(v)) => node.interval_override = Some(v),
            (15, Value::Varint(v)) => node.edited_at = Some(unzigzag(v)),
            (16, Value::Varint(v)) => node.down_since = Some(unzigzag(v)),
            (17, Value::Varint(v)) => node.reminded_at = Some(unzigzag(v)),
            (18, Value::Varint(v)) => node.deadline = Some(unzigzag(v)),
            (19, Value::Varint(v)) => node.flips = Some(v),
            (20, Value::Varint(v)) => node.flip_window = Some(unzigzag(v)),
            (21, Value::Varint(v)) => node.flapping_since = Some(unzigzag(v)),
            (22, Value::Bytes(v)) => node.fleet_key = Some(text(v)?),
            (23, Value::Bytes(v)) => node.metadata = Some(text(v)?),
            (24, Value::Varint(v)) => node.first_seen = Some(unzigzag(v)),
            (25, Value::Varint(v)) => node.down_from = Some(unzigzag(v)),
            (26, Value::Varint(v)) => node.acked_at = Some(unzigzag(v)),
            (27, Value::Varint(v)) => node.held_since = Some(unzigzag(v)),
            (28, Value::Varint(v)) => node.cadence_secs = Some(v),
            _ => {} // a field this version does not know, or the tags count
        }
    }
    node.tags = tags;
    if let Some(hb) = node.heartbeat.as_mut().filter(|hb| hb.node_id.is_empty()) {
        hb.node_id = node.node_id.clone();
    }
    Some(node)
}

fn facts(bytes: &[u8]) -> Option<EnrolledFacts> {
    let mut facts = EnrolledFacts::default();
    for field in Reader(bytes) {
        match field? {
            (1, Value::Bytes(v)) => facts.os = Some(text(v)?),
            (2, Value::Bytes(v)) => facts.arch = Some(text(v)?),
            (3, Value::Bytes(v)) => facts.agent_version = Some(text(v)?),
            (4, Value::Varint(v)) => facts.cpu_cores = Some(v),
            (5, Value::Varint(v)) => facts.memory_mb = Some(v),
            (6, Value::Varint(v)) => facts.disk_gb = Some(v),
            _ => {}
        }
    }
    Some(facts)
}

fn heartbeat_from(bytes: &[u8], part: Part) -> Option<Heartbeat> {
    let mut hb = Heartbeat::default();
    let list = |list: &mut Option<Vec<String>>, v: &[u8]| -> Option<()> {
        list.get_or_insert_with(Vec::new).push(text(v)?);
        Some(())
    };
    for field in Reader(bytes) {
        let field = field?;
        let wanted = match part {
            Part::All => true,
            Part::Status => matches!(field.0, 28 | 31),
            Part::StatusAndTags => matches!(field.0, 13 | 14 | 28 | 31),
        };
        if !wanted {
            continue;
        }
        match field {
            (1, Value::Bytes(v)) => hb.node_id = text(v)?,
            (2, Value::Bytes(v)) => hb.hostname = text(v)?,
            (3, Value::Bytes(v)) => hb.os_profile = text(v)?,
            (4, Value::Varint(v)) => hb.cloudflare_ok = v != 0,
            (5, Value::Varint(v)) => hb.services_ok = v != 0,
            (6, Value::Bytes(v)) => hb.vaultmesh_root = text(v)?,
            (7, Value::Bytes(v)) => hb.timestamp = text(v)?,
            (8, Value::Bytes(v)) => hb.name = Some(text(v)?),
            (9, Value::Bytes(v)) => hb.agent_version = Some(text(v)?),
            (10, Value::Bytes(v)) => hb.os = Some(text(v)?),
            (11, Value::Bytes(v)) => hb.arch = Some(text(v)?),
            (12, Value::Bytes(v)) => hb.kernel = Some(text(v)?),
            (13, Value::Varint(_)) => hb.tags = Some(hb.tags.take().unwrap_or_default()),
            (14, Value::Bytes(v)) => list(&mut hb.tags, v)?,
            (15, Value::Bytes(v)) => hb.ip_address = Some(text(v)?),
            (16, Value::Varint(_)) => hb.ip_addresses = Some(hb.ip_addresses.take().unwrap_or_default()),
            (17, Value::Bytes(v)) => list(&mut hb.ip_addresses, v)?,
            (18, Value::Varint(v)) => hb.cpu_cores = Some(v),
            (19, Value::Varint(v)) => hb.memory_mb = Some(v),
            (20, Value::Varint(v)) => hb.disk_gb = Some(v),
            (21, Value::Varint(v)) => hb.mem_available_mb = Some(v),
            (22, Value::Varint(v)) => hb.disk_free_gb = Some(v),
            (23, Value::Varint(_)) => hb.load = Some(hb.load.take().unwrap_or_default()),
            (24, Value::Fixed(v)) => hb.load.get_or_insert_with(Vec::new).push(f64::from_bits(v)),
            (25, Value::Varint(v)) => hb.uptime_secs = Some(v),
            (26, Value::Bytes(v)) => hb.boot_id = Some(text(v)?),
            (27, Value::Varint(v)) => hb.seq = Some(v),
            (28, Value::Varint(v)) => hb.interval_secs = Some(v),
            (29, Value::Varint(_)) => hb.checks = Some(hb.checks.take().unwrap_or_default()),
            (30, Value::Bytes(v)) => hb.checks.get_or_insert_with(Vec::new).push(check(v)?),
            (31, Value::Varint(1)) => hb.state = Some(State::Running),
            (31, Value::Varint(2)) => hb.state = Some(State::Stopping),
            _ => {}
        }
    }
    Some(hb)
}

fn check(bytes: &[u8]) -> Option<Check> {
    let mut check = Check::default();
    for field in Reader(bytes) {
        match field? {
            (1, Value::Bytes(v)) => check.name = text(v)?,
            (2, Value::Varint(v)) => check.ok = v != 0,
            (3, Value::Bytes(v)) => check.detail = text(v)?,
            _ => {}
        }
    }
    Some(check)
}

fn text(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u64, wire: u64) {
        self.varint(field << 3 | wire);
    }

    fn uint(&mut self, field: u64, v: u64) {
        self.key(field, 0);
        self.varint(v);
    }

    fn opt_uint(&mut self, field: u64, v: Option<u64>) {
        if let Some(v) = v {
            self.uint(field, v);
        }
    }

    fn int(&mut self, field: u64, v: i64) {
        self.uint(field, zigzag(v));
    }

    fn opt_int(&mut self, field: u64, v: Option<i64>) {
        if let Some(v) = v {
            self.int(field, v);
        }
    }

    fn float(&mut self, field: u64, v: f64) {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    fn bytes(&mut self, field: u64, v: &[u8]) {
        self.key(field, 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
    }

    fn str(&mut self, field: u64, v: &str) {
        self.bytes(field, v.as_bytes());
    }

    fn opt_str(&mut self, field: u64, v: Option<&str>) {
        if let Some(v) = v {
            self.str(field, v);
        }
    }

    /// A list of strings: its count under `count`, then each under `each`.
    fn strings(&mut self, count: u64, each: u64, list: Option<&Vec<String>>) {
        if let Some(list) = list {
            self.uint(count, list.len() as u64);
            for item in list {
                self.str(each, item);
            }
        }
    }

    fn nested(&mut self, field: u64, write: impl FnOnce(&mut Writer)) {
        let mut inner = Writer(Vec::new());
        write(&mut inner);
        self.bytes(field, &inner.0);
    }
}

enum Value<'a> {
    Varint(u64),
    Fixed(u64),
    Bytes(&'a [u8]),
}

/// The fields of a record in order; `None` for bytes that are not a record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first()?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    fn field(&mut self) -> Option<(u64, Value<'a>)> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                let (bits, rest) = self.0.split_first_chunk::<8>()?;
                self.0 = rest;
                Value::Fixed(u64::from_le_bytes(*bits))
            }
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                let (bytes, rest) = (self.0.get(..len)?, self.0.get(len..)?);
                self.0 = rest;
                Value::Bytes(bytes)
            }
            _ => return None,
        };
        Some((key >> 3, value))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Option<(u64, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_none() {
            self.0 = &[]; // damaged: stop after saying so
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_node() -> NodeRecord {
        let heartbeat = Heartbeat {
            node_id: "550e8400-e29b-41d4-a716-446655440000".into(),
            hostname: "pi4".into(),
            os_profile: "debian".into(),
            cloudflare_ok: true,
            services_ok: false,
            vaultmesh_root: "/".into(),
            timestamp: "2026-11-22T10:00:00.123Z".into(),
            name: Some("garage-pi".into()),
            agent_version: Some("0.1.0".into()),
            os: Some("linux".into()),
            arch: Some("aarch64".into()),
            kernel: Some("6.6.51".into()),
            tags: Some(vec![]),
            ip_address: Some("192.168.1.40".into()),
            ip_addresses: Some(vec!["192.168.1.40".into(), "fd00::40".into()]),
            cpu_cores: Some(4),
            memory_mb: Some(3793),
            disk_gb: Some(0),
            mem_available_mb: Some(2910),
            disk_free_gb: None,
            load: Some(vec![0.08, 0.12, -0.0]),
            uptime_secs: Some(86400),
            boot_id: Some("8543a968-cc9d-410f-9d61-5ddd2938046b".into()),
            seq: Some(u64::MAX),
            interval_secs: Some(30),
            checks: Some(vec![Check { name: "cloudflared".into(), ok: false, detail: "inactive".into() }]),
            state: Some(State::Stopping),
        };
        NodeRecord {
            node_id: heartbeat.node_id.clone(),
            name: "garage-pi".into(),
            hostname: "pi4".into(),
            tags: vec!["garage".into(), "".into()],
            enrolled_at: 1_795_000_000_000,
            last_seen: Some(1_795_000_001_000),
            clock_skew_secs: Some(-3),
            token_hash: Some("d175dd25ea90fe16f79c3e7f63aa98f8e085060724f4b4b19344c70134d33514".into()),
            enrolled_with: EnrolledFacts { os: Some("linux".into()), cpu_cores: Some(4), ..EnrolledFacts::default() },
            heartbeat: Some(heartbeat),
            grace_secs: Some(90),
            interval_override: None,
            edited_at: Some(i64::MIN),
            down_since: None,
            reminded_at: Some(0),
            deadline: Some(1_795_000_091_000),
            flips: Some(6),
            flip_window: Some(1_795_000_000_500),
            flapping_since: Some(1_795_000_000_900),
            fleet_key: Some("0123456789abcdef".into()),
            metadata: Some(r#"{"role":"beacon-master"}"#.into()),
            first_seen: Some(1_795_000_000_001),
            down_from: Some(-5),
            acked_at: Some(1_795_000_000_002),
            held_since: Some(1_795_000_000_003),
            cadence_secs: Some(61),
        }
    }

    /// A record as this version stores it, byte for byte: renumbering or re-encoding a
    /// field breaks every store already written, and this test.
    fn golden_node() -> NodeRecord {
        let heartbeat = Heartbeat {
            node_id: "550e8400-e29b-41d4-a716-446655440000".into(),
            hostname: "pi4".into(),
            timestamp: "2026-11-22T10:00:00Z".into(),
            services_ok: true,
            tags: Some(vec!["lab".into()]),
            load: Some(vec![0.5, 0.25, 0.0]),
            seq: Some(7),
            checks: Some(vec![Check { name: "disk".into(), ok: false, detail: "full".into() }]),
            state: Some(State::Running),
            ..Heartbeat::default()
        };
        NodeRecord {
            node_id: heartbeat.node_id.clone(),
            name: "garage".into(),
            hostname: "pi4".into(),
            tags: vec!["home".into()],
            enrolled_at: 1_795_000_000_000,
            last_seen: Some(1_795_000_001_000),
            down_since: Some(-1),
            deadline: Some(1_795_000_091_000),
            heartbeat: Some(heartbeat),
            ..NodeRecord::default()
        }
    }

    const GOLDEN: &str = "010a2435353065383430302d653239622d343164342d613731362d34343636353534343030303012066761726167651a0370693420012a04686f6d653080f8b2e5bd6838d087b3e5bd68626512037069341a002000280132003a14323032362d31312d32325431303a30303a30305a680172036c6162b80103c101000000000000e03fc101000000000000d03fc1010000000000000000d80107e80101f2010e0a046469736b10001a0466756c6cf801018001019001f085bee5bd68";

    #[test]
    fn the_stored_form_does_not_change() {
        let hex: String = encode_node(&golden_node()).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, GOLDEN);
        let bytes: Vec<u8> =
            (0..GOLDEN.len() / 2).map(|i| u8::from_str_radix(&GOLDEN[2 * i..2 * i + 2], 16).unwrap()).collect();
        assert_eq!(decode_node(&bytes), Some(golden_node()));
    }

    #[test]
    fn every_field_survives_a_round_trip() {
        let node = full_node();
        assert_eq!(decode_node(&encode_node(&node)), Some(node.clone()));
        let bare = NodeRecord { node_id: "n".into(), ..NodeRecord::default() };
        assert_eq!(decode_node(&encode_node(&bare)), Some(bare));
        let other = NodeRecord { token_hash: Some("not hex".into()), ..node };
        assert_eq!(decode_node(&encode_node(&other)), Some(other));
    }

    #[test]
    fn the_status_part_holds_what_status_needs() {
        let node = full_node();
        let part = decode_node_status(&encode_node(&node), false).unwrap();
        let hb = part.heartbeat.as_ref().unwrap();
        assert_eq!((hb.interval_secs, hb.state, hb.kernel.as_deref()), (Some(30), Some(State::Stopping), None));
        assert_eq!((&part.node_id, &part.name, &part.hostname), (&node.node_id, &node.name, &node.hostname));
        assert_eq!(
            (part.last_seen, part.grace_secs, part.down_since, part.cadence_secs),
            (node.last_seen, node.grace_secs, node.down_since, node.cadence_secs)
        );
        assert!(part.tags.is_empty() && part.token_hash.is_none());
        for now in [node.last_seen.unwrap(), node.last_seen.unwrap() + 3_600_000] {
            assert_eq!(part.status(now, 90_000), node.status(now, 90_000));
        }
        let tagged = decode_node_status(&encode_node(&node), true).unwrap();
        assert!(!node.all_tags().is_empty());
        assert_eq!(tagged.all_tags(), node.all_tags(), "what a window's or silence's tag scope reads");
        assert_eq!(tagged.heartbeat.as_ref().unwrap().kernel, None);
    }

    #[test]
    fn records_stored_as_json_are_still_read() {
        let node = full_node();
        assert_eq!(decode_node(miniserde::json::to_string(&node).as_bytes()), Some(node));
    }

    #[test]
    fn the_binary_form_is_under_half_the_json() {
        let node = full_node();
        let (binary, json) = (encode_node(&node).len(), miniserde::json::to_string(&node).len());
        assert!(binary * 2 < json, "{binary} bytes against {json} as JSON");
    }

    #[test]
    fn damaged_or_truncated_records_are_refused_not_panicked_on() {
        let bytes = encode_node(&full_node());
        for cut in 0..bytes.len() {
            let _ = decode_node(&bytes[..cut]);
        }
        assert_eq!(decode_node(&[FORMAT, 0xff, 0xff]), None);
        assert_eq!(decode_node(&[7]), None);
        assert_eq!(decode_node(&[]), None);
        // a field from a later version is skipped
        let mut later = Writer(bytes.clone());
        later.str(99, "from a later version");
        later.float(98, 1.5);
        assert_eq!(decode_node(&later.0), Some(full_node()));
    }
}
