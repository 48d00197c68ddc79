//! Nodes, and the index of their deadlines that the sweep reads.

use super::{corrupt_node, deadline_key, decode_node, storable, Error, ReadTxn, RwTxn, Scan, Txn};
use crate::codec;
use crate::model::NodeRecord;

impl<T: ReadTxn> Txn<'_, T> {
    pub fn node(&self, node_id: &str) -> Result<Option<NodeRecord>, Error> {
        self.get_with(self.dbs.nodes, node_id.as_bytes(), decode_node)
    }

    /// Every node, ordered by node id.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, Error> {
        let mut out = Vec::new();
        for entry in self.dbs.nodes.iter(self.raw.ro())? {
            let (_, value) = entry?;
            out.push(decode_node(value)?);
        }
        Ok(out)
    }

    /// Hands `visit` every node in id order, one at a time, so that the whole fleet is
    /// never in memory at once.
    pub fn each_node(&self, mut visit: impl FnMut(NodeRecord)) -> Result<(), Error> {
        for entry in self.dbs.nodes.iter(self.raw.ro())? {
            visit(decode_node(entry?.1)?);
        }
        Ok(())
    }

    /// Hands `visit` every node in id order, with only what its status needs (and with
    /// `tags`, its tags: `codec::decode_node_status`), one at a time: for reading the whole
    /// fleet fast.
    /// These partial records are never to be saved.
    pub fn each_node_status(&self, tags: bool, mut visit: impl FnMut(NodeRecord)) -> Result<(), Error> {
        for entry in self.dbs.nodes.iter(self.raw.ro())? {
            let (_, value) = entry?;
            visit(codec::decode_node_status(value, tags).ok_or_else(|| corrupt_node(value))?);
        }
        Ok(())
    }

    /// Up to `limit` nodes in id order, starting after `after`; and whether more follow.
    pub fn nodes_page(&self, after: Option<&str>, limit: usize) -> Result<(Vec<NodeRecord>, bool), Error> {
        use std::ops::Bound;
        let after = after.map(str::as_bytes).filter(|id| storable(id));
        let range = (after.map_or(Bound::Unbounded, Bound::Excluded), Bound::Unbounded);
        let mut out = Vec::new();
        for entry in self.dbs.nodes.range(self.raw.ro(), &range)? {
            if out.len() == limit {
                return Ok((out, true));
            }
            let (_, value) = entry?;
            out.push(decode_node(value)?);
        }
        Ok((out, false))
    }

    pub fn node_count(&self) -> Result<u64, Error> {
        Ok(self.dbs.nodes.len(self.raw.ro())?)
    }

    /// Up to `limit` nodes whose deadline is at or before `now`, earliest first.
    pub fn due_nodes(&self, now: i64, limit: usize) -> Result<Vec<(i64, String)>, Error> {
        let mut out = Vec::new();
        for entry in self.dbs.deadlines.iter(self.raw.ro())?.take(limit) {
            let key = entry?.0;
            let (when, id) = key.split_at_checked(8).ok_or_else(|| Error::Corrupt("deadline key".into()))?;
            let when = i64::from_be_bytes(when.try_into().expect("8 bytes"));
            if when > now {
                break;
            }
            out.push((when, String::from_utf8_lossy(id).into_owned()));
        }
        Ok(out)
    }
}

impl Txn<'_, RwTxn<'_>> {
    /// Drops an entry of the deadline index that is not its node's deadline (or whose node
    /// is gone), and makes sure the node's own deadline has its entry: the sweep takes a
    /// few entries at a time, so one that would stay due forever must not stay.
    pub fn repair_deadline(&mut self, when: i64, node_id: &str, deadline: Option<i64>) -> Result<(), Error> {
        self.move_deadline(self.dbs.deadlines, node_id, Some(when), deadline)
    }

    pub fn put_node(&mut self, node: &NodeRecord) -> Result<(), Error> {
        self.put_bytes(self.dbs.nodes, node.node_id.as_bytes(), &codec::encode_node(node))
    }

    /// Saves a node whose deadline was `previous`, moving it in the deadline index if it changed.
    pub fn save_node(&mut self, node: &NodeRecord, previous: Option<i64>) -> Result<(), Error> {
        self.move_deadline(self.dbs.deadlines, &node.node_id, previous, node.deadline)?;
        self.put_node(node)
    }

    /// Removes a node with everything that hangs off it: its agent token (so its next
    /// heartbeat gets 401; for a Wrenn host, its JWT), its place in the deadline index,
    /// its events, its host record and its uptime log.
    pub fn delete_node(&mut self, node: &NodeRecord) -> Result<(), Error> {
        if let Some(hash) = node.token_hash.as_deref().and_then(crate::secret::unhex32) {
            self.delete_agent_token(&hash)?;
        }
        if let Some(deadline) = node.deadline {
            self.delete(self.dbs.deadlines, &deadline_key(deadline, &node.node_id))?;
        }
        self.delete_scan(self.dbs.events, Some(node.node_id.as_bytes()), |_, _| Ok(Scan::Delete))?;
        self.delete_host(&node.node_id)?;
        self.delete_spans(&node.node_id)?;
        self.delete(self.dbs.nodes, node.node_id.as_bytes())
    }
}
