//! Public status pages, by slug.

use super::{Error, ReadTxn, RwTxn, Txn};
use crate::model::StatusPageRecord;

impl<T: ReadTxn> Txn<'_, T> {
    pub fn status_page(&self, slug: &str) -> Result<Option<StatusPageRecord>, Error> {
        self.get(self.dbs.status_pages, slug.as_bytes())
    }

    /// Every status page, by slug.
    pub fn status_pages(&self) -> Result<Vec<StatusPageRecord>, Error> {
        Ok(self.all(self.dbs.status_pages, |_| Some(()))?.into_iter().map(|((), p)| p).collect())
    }
}

impl Txn<'_, RwTxn<'_>> {
    pub fn put_status_page(&mut self, page: &StatusPageRecord) -> Result<(), Error> {
        self.put(self.dbs.status_pages, page.slug.as_bytes(), page)
    }

    /// Removes a page; whether it was there.
    pub fn delete_status_page(&mut self, slug: &str) -> Result<bool, Error> {
        self.remove(self.dbs.status_pages, slug.as_bytes())
    }
}
