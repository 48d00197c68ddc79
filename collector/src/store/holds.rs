//! What holds alerts back: maintenance windows and silences, a few records each.

use super::{Error, ReadTxn, RwTxn, Txn};
use crate::model::{MaintenanceRecord, SilenceRecord};

impl<T: ReadTxn> Txn<'_, T> {
    /// Every maintenance window, by id.
    pub fn windows(&self) -> Result<Vec<MaintenanceRecord>, Error> {
        Ok(self.all(self.dbs.maintenance, |_| Some(()))?.into_iter().map(|((), w)| w).collect())
    }

    /// Every silence, by id, ended ones included until they are trimmed.
    pub fn silences(&self) -> Result<Vec<SilenceRecord>, Error> {
        Ok(self.all(self.dbs.silences, |_| Some(()))?.into_iter().map(|((), s)| s).collect())
    }
}

impl Txn<'_, RwTxn<'_>> {
    pub fn put_window(&mut self, window: &MaintenanceRecord) -> Result<(), Error> {
        self.put(self.dbs.maintenance, window.id.as_bytes(), window)
    }

    /// Removes a window; whether it was there.
    pub fn delete_window(&mut self, id: &str) -> Result<bool, Error> {
        self.remove(self.dbs.maintenance, id.as_bytes())
    }

    /// Adds a silence, and forgets those that ended before `now`.
    pub fn put_silence(&mut self, silence: &SilenceRecord, now: i64) -> Result<(), Error> {
        for old in self.silences()?.into_iter().filter(|s| s.until <= now) {
            self.delete(self.dbs.silences, old.id.as_bytes())?;
        }
        self.put(self.dbs.silences, silence.id.as_bytes(), silence)
    }

    /// Removes a silence; whether it was there.
    pub fn delete_silence(&mut self, id: &str) -> Result<bool, Error> {
        self.remove(self.dbs.silences, id.as_bytes())
    }
}
