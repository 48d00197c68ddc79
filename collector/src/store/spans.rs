//! Each node's uptime log: the spans it was offline, stopped, or offline in maintenance.
//! A node that never failed or stopped has no record here.

use super::{span_key, storable, Error, ReadTxn, RwTxn, Scan, Txn};
use crate::model::{Span, SpanCause};
use crate::uptime::{KEPT_MS, SPANS_PER_NODE};

impl<T: ReadTxn> Txn<'_, T> {
    /// The node's spans, oldest first.
    pub fn spans(&self, node_id: &str) -> Result<Vec<Span>, Error> {
        let mut out = Vec::new();
        if !storable(node_id.as_bytes()) {
            return Ok(out);
        }
        for entry in self.dbs.spans.prefix_iter(self.raw.ro(), node_id.as_bytes())? {
            let (key, value) = entry?;
            // The prefix also finds longer node ids that start with this one.
            if key.len() != node_id.len() + 8 {
                continue;
            }
            out.push(decode_span(&key[node_id.len()..], value)?);
        }
        Ok(out)
    }
}

fn decode_span(start: &[u8], value: &[u8]) -> Result<Span, Error> {
    let corrupt = || Error::Corrupt(format!("a {}-byte uptime span", value.len()));
    let start = i64::from_be_bytes(start.try_into().map_err(|_| corrupt())?);
    let (end, cause) = value.split_at_checked(8).ok_or_else(corrupt)?;
    let end = i64::from_be_bytes(end.try_into().map_err(|_| corrupt())?);
    let cause = cause.first().copied().and_then(SpanCause::from_code).ok_or_else(corrupt)?;
    Ok(Span { start, end, cause })
}

impl Txn<'_, RwTxn<'_>> {
    /// Adds a span to the node's log, and drops what is older than [`KEPT_MS`] at `now`
    /// and, past [`SPANS_PER_NODE`], the oldest.
    pub fn put_span(&mut self, node_id: &str, span: Span, now: i64) -> Result<(), Error> {
        if !storable(&span_key(node_id, 0)) || span.end <= span.start {
            return Ok(());
        }
        let mut value = span.end.to_be_bytes().to_vec();
        value.push(span.cause.code());
        self.put_bytes(self.dbs.spans, &span_key(node_id, span.start), &value)?;
        let kept = self.spans(node_id)?;
        let excess = kept.len().saturating_sub(SPANS_PER_NODE);
        let mut seen = 0;
        let len = node_id.len() + 8;
        self.delete_scan(self.dbs.spans, Some(node_id.as_bytes()), |key, value| {
            if key.len() != len {
                return Ok(Scan::Keep);
            }
            seen += 1;
            let old = decode_span(&key[node_id.len()..], value)?;
            Ok(if seen <= excess || old.end < now - KEPT_MS { Scan::Delete } else { Scan::Stop })
        })?;
        Ok(())
    }

    /// Forgets a node's uptime log (the node is deleted).
    pub fn delete_spans(&mut self, node_id: &str) -> Result<(), Error> {
        if !storable(node_id.as_bytes()) {
            return Ok(());
        }
        let len = node_id.len() + 8;
        self.delete_scan(self.dbs.spans, Some(node_id.as_bytes()), |key, _| {
            Ok(if key.len() == len { Scan::Delete } else { Scan::Keep })
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Span, SpanCause};
    use crate::store::{Store, StoreConfig};
    use crate::uptime::{DAY_MS, SPANS_PER_NODE};

    /// However often a node flaps, its log holds at most its cap, the newest kept; spans
    /// older than 90 days go; a node whose id starts another's keeps its own.
    #[test]
    fn the_log_is_bounded_per_node_and_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 64 << 20)).unwrap();
        let span = |i: i64| Span { start: i * 1000, end: i * 1000 + 500, cause: SpanCause::Offline };
        store.write(|txn| txn.put_span("n", span(0), 0)).unwrap();
        for i in 0..(SPANS_PER_NODE as i64 + 50) {
            store.write(|txn| txn.put_span("n1", span(i), i * 1000 + 500)).unwrap();
        }
        let kept = store.read(|txn| txn.spans("n1")).unwrap();
        assert_eq!(kept.len(), SPANS_PER_NODE);
        assert_eq!(kept[0], span(50), "the oldest are dropped first");
        assert_eq!(store.read(|txn| txn.spans("n")).unwrap(), [span(0)]);
        let late = 91 * DAY_MS;
        store
            .write(|txn| txn.put_span("n1", Span { start: late, end: late + 1, cause: SpanCause::Stopped }, late))
            .unwrap();
        assert_eq!(store.read(|txn| txn.spans("n1")).unwrap().len(), 1, "spans past 90 days are dropped");
        store.write(|txn| txn.delete_spans("n1")).unwrap();
        assert_eq!(store.read(|txn| txn.spans("n1")).unwrap(), []);
        assert_eq!(store.read(|txn| txn.spans("n")).unwrap(), [span(0)]);
    }

    /// What `cargo xtask bench scale` measures, at a smaller size: the store's bytes per
    /// node, each node enrolled with a token and sending the bench's full heartbeat. Nodes
    /// that never fail keep no uptime log at all, and the whole stays within 1 KiB a node;
    /// a node that flaps without end is bounded by its cap.
    #[test]
    fn a_node_that_never_fails_costs_no_uptime_log_and_the_store_stays_within_a_kib_a_node() {
        use crate::liveness::{self, Policy};
        use crate::model::NodeRecord;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 256 << 20)).unwrap();
        let template = include_str!("../../../xtask/bench/heartbeat.json");
        const NODES: usize = 3000;
        for batch in 0..(NODES / 500) {
            store
                .write(|txn| {
                    for i in batch * 500..(batch + 1) * 500 {
                        let id = format!("550e8400-e29b-41d4-a716-{i:012}");
                        let body = template
                            .trim()
                            .replace("NODE_ID", &id)
                            .replace("TIMESTAMP", "2026-11-30T00:00:00Z")
                            .replace("SEQ", "1");
                        let hb = hearth_wire::Heartbeat::from_json(&body).unwrap();
                        let mut node = NodeRecord {
                            node_id: id.clone(),
                            name: format!("node-{i}"),
                            enrolled_at: 1_795_000_000_000,
                            token_hash: Some(crate::secret::hex(&crate::secret::hash(&id))),
                            ..Default::default()
                        };
                        txn.put_agent_token(&crate::secret::hash(&id), &id)?;
                        let previous = node.deadline;
                        liveness::on_heartbeat(&mut node, hb, 1_795_000_000_000 + i as i64, &Policy::default());
                        txn.save_node(&node, previous)?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        let used = store.read(|txn| txn.database_bytes()).unwrap();
        let spans = used.iter().find(|(db, _)| *db == "spans").unwrap().1;
        assert_eq!(spans, 0, "no node failed, so no uptime log");
        let lasting: u64 = used.iter().filter(|(db, _)| *db != "enroll_tokens" && *db != "audit").map(|(_, b)| b).sum();
        let per_node = lasting / NODES as u64;
        assert!(per_node <= 1024, "{per_node} bytes a node: {used:?}");

        // One node flapping for ever keeps its cap of spans: about 120 bytes each in LMDB's
        // half-filled pages.
        for i in 0..(SPANS_PER_NODE as i64 * 2) {
            let span = Span { start: i * 10_000, end: i * 10_000 + 5_000, cause: SpanCause::Offline };
            store.write(|txn| txn.put_span("550e8400-e29b-41d4-a716-000000000001", span, i * 10_000 + 5_000)).unwrap();
        }
        let spans =
            store.read(|txn| txn.database_bytes()).unwrap().into_iter().find(|(db, _)| *db == "spans").unwrap().1;
        assert!(spans <= 32 << 10, "{spans} bytes for one node's log at its cap");
    }
}
