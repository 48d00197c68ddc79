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
}
