//! Wrenn hosts: what a node that is one keeps beside its node record.

use super::{Error, ReadTxn, RwTxn, Txn};
use crate::model::HostRecord;

impl<T: ReadTxn> Txn<'_, T> {
    pub fn host(&self, node_id: &str) -> Result<Option<HostRecord>, Error> {
        self.get(self.dbs.hosts, node_id.as_bytes())
    }

    /// Every host, by node id.
    pub fn hosts(&self) -> Result<Vec<(String, HostRecord)>, Error> {
        self.all(self.dbs.hosts, |key| String::from_utf8(key.to_vec()).ok())
    }
}

impl Txn<'_, RwTxn<'_>> {
    pub fn put_host(&mut self, node_id: &str, host: &HostRecord) -> Result<(), Error> {
        self.put(self.dbs.hosts, node_id.as_bytes(), host)
    }

    pub(super) fn delete_host(&mut self, node_id: &str) -> Result<(), Error> {
        self.delete(self.dbs.hosts, node_id.as_bytes())
    }
}
