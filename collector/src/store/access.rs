//! Who may call: agent tokens, enrolment tokens, fleet keys (and the Beacon devices each
//! let in), API keys, users and their sessions.

use super::{decode, fleet_device_key, storable, Error, ReadTxn, RwTxn, Scan, Txn};
use crate::model::{ApiKeyRecord, EnrollTokenRecord, FleetKeyRecord, SessionRecord, UserRecord};
use miniserde::Deserialize;

impl<T: ReadTxn> Txn<'_, T> {
    /// The node an agent token belongs to.
    pub fn agent_token_node(&self, token_hash: &[u8; 32]) -> Result<Option<String>, Error> {
        let found = self.dbs.agent_tokens.get(self.raw.ro(), token_hash)?;
        found
            .map(|id| String::from_utf8(id.to_vec()).map_err(|_| Error::Corrupt("agent token index".into())))
            .transpose()
    }

    pub fn enroll_token(&self, token_hash: &[u8; 32]) -> Result<Option<EnrollTokenRecord>, Error> {
        self.get(self.dbs.enroll_tokens, token_hash)
    }

    /// Every enrolment token, keyed by the SHA-256 of its raw value.
    pub fn enroll_tokens(&self) -> Result<Vec<([u8; 32], EnrollTokenRecord)>, Error> {
        self.all(self.dbs.enroll_tokens, |key| key.try_into().ok())
    }

    pub fn fleet_key(&self, key_hash: &[u8; 32]) -> Result<Option<FleetKeyRecord>, Error> {
        self.get(self.dbs.fleet_keys, key_hash)
    }

    /// Every fleet key, keyed by the SHA-256 of its raw value.
    pub fn fleet_keys(&self) -> Result<Vec<([u8; 32], FleetKeyRecord)>, Error> {
        self.all(self.dbs.fleet_keys, |key| key.try_into().ok())
    }

    /// The node a fleet key's Beacon device already has.
    pub fn fleet_device(&self, key_id: &str, device_name: &str) -> Result<Option<String>, Error> {
        let key = fleet_device_key(key_id, device_name);
        if !storable(&key) {
            return Ok(None);
        }
        let found = self.dbs.fleet_devices.get(self.raw.ro(), &key)?;
        found
            .map(|id| String::from_utf8(id.to_vec()).map_err(|_| Error::Corrupt("fleet device index".into())))
            .transpose()
    }

    pub fn api_key(&self, key_hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, Error> {
        self.get(self.dbs.api_keys, key_hash)
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, Error> {
        self.get(self.dbs.users, name.as_bytes())
    }

    /// Every user, ordered by name.
    pub fn users(&self) -> Result<Vec<UserRecord>, Error> {
        Ok(self.all(self.dbs.users, |_| Some(()))?.into_iter().map(|(_, user)| user).collect())
    }

    pub fn session(&self, session_hash: &[u8; 32]) -> Result<Option<SessionRecord>, Error> {
        self.get(self.dbs.sessions, session_hash)
    }
}

impl Txn<'_, RwTxn<'_>> {
    pub fn put_agent_token(&mut self, token_hash: &[u8; 32], node_id: &str) -> Result<(), Error> {
        self.put_bytes(self.dbs.agent_tokens, token_hash, node_id.as_bytes())
    }

    pub fn delete_agent_token(&mut self, token_hash: &[u8; 32]) -> Result<(), Error> {
        self.delete(self.dbs.agent_tokens, token_hash)
    }

    pub fn put_enroll_token(&mut self, token_hash: &[u8; 32], record: &EnrollTokenRecord) -> Result<(), Error> {
        self.put(self.dbs.enroll_tokens, token_hash, record)
    }

    pub fn delete_enroll_token(&mut self, token_hash: &[u8; 32]) -> Result<(), Error> {
        self.delete(self.dbs.enroll_tokens, token_hash)
    }

    pub fn put_fleet_key(&mut self, key_hash: &[u8; 32], record: &FleetKeyRecord) -> Result<(), Error> {
        self.put(self.dbs.fleet_keys, key_hash, record)
    }

    /// Remembers that `device_name`, beating with fleet key `key_id`, is node `node_id`.
    pub fn put_fleet_device(&mut self, key_id: &str, device_name: &str, node_id: &str) -> Result<(), Error> {
        let key = fleet_device_key(key_id, device_name);
        if !storable(&key) {
            return Err(Error::Corrupt(format!("a {}-byte fleet device key", key.len())));
        }
        self.put_bytes(self.dbs.fleet_devices, &key, node_id.as_bytes())
    }

    pub fn put_api_key(&mut self, key_hash: &[u8; 32], record: &ApiKeyRecord) -> Result<(), Error> {
        self.put(self.dbs.api_keys, key_hash, record)
    }

    pub fn put_user(&mut self, user: &UserRecord) -> Result<(), Error> {
        self.put(self.dbs.users, user.name.as_bytes(), user)
    }

    /// Ends every session of one user; returns how many there were.
    pub fn delete_sessions_of(&mut self, name: &str) -> Result<usize, Error> {
        self.delete_scan(self.dbs.sessions, None, |k, v| judge_hashed(k, v, |s: &SessionRecord| s.user == name))
    }

    /// Removes a user, their sessions and their API keys.
    pub fn delete_user(&mut self, name: &str) -> Result<(), Error> {
        self.delete_sessions_of(name)?;
        self.delete_scan(self.dbs.api_keys, None, |k, v| {
            judge_hashed(k, v, |key: &ApiKeyRecord| key.user.as_deref() == Some(name))
        })?;
        self.delete(self.dbs.users, name.as_bytes())
    }

    pub fn put_session(&mut self, session_hash: &[u8; 32], session: &SessionRecord) -> Result<(), Error> {
        self.put(self.dbs.sessions, session_hash, session)
    }

    pub fn delete_session(&mut self, session_hash: &[u8; 32]) -> Result<(), Error> {
        self.delete(self.dbs.sessions, session_hash)
    }

    /// Drops sessions expired by `now`, and enrolment tokens used (or, unused, expired)
    /// before `cutoff` (both Unix ms); returns how many.
    pub fn prune_credentials(&mut self, now: i64, cutoff: i64) -> Result<usize, Error> {
        let sessions = self.delete_scan(self.dbs.sessions, None, |k, v| {
            judge_hashed(k, v, |session: &SessionRecord| session.expires_at <= now)
        })?;
        let tokens = self.delete_scan(self.dbs.enroll_tokens, None, |k, v| {
            judge_hashed(k, v, |token: &EnrollTokenRecord| token.used_at.unwrap_or(token.expires_at) < cutoff)
        })?;
        Ok(sessions + tokens)
    }
}

/// Whether to delete a record of a table keyed by SHA-256, as `doomed` says of it; a key
/// of another length is damage, as when the table is read whole.
fn judge_hashed<V: Deserialize>(key: &[u8], value: &[u8], doomed: impl FnOnce(&V) -> bool) -> Result<Scan, Error> {
    if key.len() != 32 {
        return Err(Error::Corrupt(format!("a {}-byte key", key.len())));
    }
    Ok(if doomed(&decode(value)?) { Scan::Delete } else { Scan::Keep })
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, StoreConfig};

    /// A transaction whose only change is an agent token, put or deleted, is committed:
    /// the change is there after the store is closed and opened again.
    #[test]
    fn a_transaction_that_only_changes_an_agent_token_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(dir.path(), 16 << 20);
        let hash = [7u8; 32];
        let token_node_after = |change: &dyn Fn(&Store)| {
            let store = Store::open(&config).unwrap();
            change(&store);
            drop(store);
            Store::open(&config).unwrap().read(|txn| txn.agent_token_node(&hash)).unwrap()
        };
        let put = token_node_after(&|store| store.write(|txn| txn.put_agent_token(&hash, "node-1")).unwrap());
        assert_eq!(put.as_deref(), Some("node-1"), "the token put alone was not committed");
        let deleted = token_node_after(&|store| store.write(|txn| txn.delete_agent_token(&hash)).unwrap());
        assert_eq!(deleted, None, "the token deleted alone was not committed");
    }
}
