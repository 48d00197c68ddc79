//! The node store: one LMDB environment, and the only module that touches it.
//!
//! Every change happens inside one write transaction ([`Store::write`], or
//! [`Store::write_unsynced`] followed by [`Store::sync`]), committed and flushed to disk
//! before the caller answers anyone. Reads run on their own snapshots, beside it.
//! When the memory map fills, the transaction is thrown away, the map grows,
//! and the same work runs again from the start.

use crate::codec;
use crate::model::{
    AlertRecord, ApiKeyRecord, AuditRecord, EnrollTokenRecord, EventRecord, NodeRecord, SessionRecord, UserRecord,
};
use heed::types::Bytes;
/// A write transaction, for the signatures of code that writes through [`Txn`].
pub use heed::RwTxn;
use heed::{CommitOrAbort, Env, EnvOpenOptions, MdbError, RoTxn, WithoutTls};
use miniserde::{json, Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// The map size to start with, in bytes; LMDB keeps a larger one if the file already needs it.
    pub initial_map: usize,
    /// The map never grows past this many bytes; past it, writes fail with [`Error::Full`].
    pub max_map: usize,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>, max_map: usize) -> StoreConfig {
        StoreConfig { dir: dir.into(), initial_map: max_map.min(8 << 20), max_map }
    }
}

/// The largest map a store may grow to by default: plenty on 64-bit, within reach on 32-bit.
pub const DEFAULT_MAX_MAP: usize = if usize::BITS >= 64 { 64 << 30 } else { 1 << 30 };

#[derive(Debug)]
pub enum Error {
    /// The map is at its maximum size and the write does not fit.
    Full,
    /// A stored record could not be read back: a bug or a damaged file.
    Corrupt(String),
    Lmdb(heed::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Full => f.write_str("the database is full and may not grow further (see --max-db-mb)"),
            Error::Corrupt(what) => write!(f, "a stored record is damaged: {what}"),
            Error::Lmdb(e) => write!(f, "database error: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<heed::Error> for Error {
    fn from(e: heed::Error) -> Error {
        Error::Lmdb(e)
    }
}

type Database = heed::Database<'static, Bytes, Bytes>;

struct Dbs {
    /// node id → [`NodeRecord`]
    nodes: Database,
    /// SHA-256 of an agent token → node id
    agent_tokens: Database,
    /// SHA-256 of an enrolment token → [`EnrollTokenRecord`]
    enroll_tokens: Database,
    /// SHA-256 of an API key → [`ApiKeyRecord`]
    api_keys: Database,
    /// node id ++ event id (u64 BE) → [`EventRecord`]
    events: Database,
    /// alert id (u64 BE) → [`AlertRecord`], delivered or not, for `GET /api/alerts`
    alerts: Database,
    /// alert id (u64 BE) → nothing: the alerts not yet settled
    outbox: Database,
    /// node id ++ alert id (u64 BE) → nothing: the outbox by node, for its cap per node
    outbox_by_node: Database,
    /// alert id (u64 BE) → nothing: the settled alerts, oldest first, for trimming
    settled: Database,
    /// deadline (i64 BE, Unix ms) ++ node id → nothing: when the sweep looks at each node
    deadlines: Database,
    /// `next_id` → u64 BE, the last id handed out to an event, alert or audit entry;
    /// `setting:NAME` → JSON, what the collector keeps across restarts (see [`setting`])
    meta: Database,
    /// user name → [`UserRecord`]
    users: Database,
    /// SHA-256 of a session cookie → [`SessionRecord`]
    sessions: Database,
    /// entry id (u64 BE) → [`AuditRecord`]
    audit: Database,
}

/// The names of the settings kept in `meta`, read with [`Txn::setting`].
pub mod setting {
    /// The `liveness::Policy` the last `serve` ran with, so the CLI judges nodes as it does.
    pub const POLICY: &str = "policy";
    /// The channels file the last `serve` read (an absolute path), for `alert test`.
    pub const CHANNELS_FILE: &str = "channels_file";
    /// When the running collector last said it was alive (Unix ms, its clock).
    pub const ALIVE_AT: &str = "alive_at";
    /// Since when this collector has been watching, and how long it was away before (`liveness::Watching`).
    pub const WATCHING: &str = "watching";
    /// How many alerts were dropped unsent by the per-node outbox cap, ever.
    pub const ALERTS_DROPPED: &str = "alerts_dropped";
}

/// Events kept per node; older ones are dropped as new ones come.
pub const EVENTS_PER_NODE: usize = 500;
/// Alerts kept for `GET /api/alerts` once settled.
pub const ALERTS_KEPT: usize = 5000;
/// Audit entries kept at most, whatever their age (they are kept [`AUDIT_MAX_AGE_MS`]);
/// the oldest is dropped as each new one comes past it.
pub const AUDIT_KEPT: usize = 250_000;
/// How long audit entries are kept: 90 days.
pub const AUDIT_MAX_AGE_MS: i64 = 90 * 86_400_000;

pub struct Store {
    env: Env<WithoutTls>,
    dbs: Dbs,
    max_map: usize,
    /// Held shared by every transaction and exclusively by a resize, which LMDB allows
    /// only while this process has no transaction open (the request thread and the
    /// alert worker share the store).
    resizing: RwLock<()>,
}

impl Store {
    /// Whether `dir` holds a store (LMDB's `data.mdb`), for commands that only read one.
    pub fn exists(dir: &Path) -> bool {
        dir.join("data.mdb").is_file()
    }

    /// Opens (creating if needed) the store in `config.dir`.
    pub fn open(config: &StoreConfig) -> Result<Store, Error> {
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(round_to_page(config.initial_map)).max_dbs(16);
        // A commit flushes its pages but not the meta page that makes them current: that
        // flush is `sync`'s, so the request thread can go on to the next batch while the
        // last one's second flush runs (see `write_unsynced`). LMDB keeps the store intact
        // with this flag; only an unflushed commit can be lost, and nothing is acknowledged
        // before its flush.
        // SAFETY: the flag changes when LMDB flushes, not how the memory map is used.
        unsafe { options.flags(heed::EnvFlags::NO_META_SYNC) };
        // SAFETY: the environment is opened once per process, only through this module,
        // and its file is changed only by LMDB (in this process or another).
        let env = unsafe { options.open(&config.dir)? };
        let txn = env.write_txn()?;
        let created = env.create_databases_and_commit(txn, |opener, txn| -> Result<_, heed::Error> {
            let mut create = |name| opener.create_database::<Bytes, Bytes>(txn, Some(name));
            let all = (
                [create("nodes")?, create("agent_tokens")?, create("enroll_tokens")?, create("api_keys")?],
                [create("events")?, create("alerts")?, create("outbox")?, create("deadlines")?, create("meta")?],
                [create("users")?, create("sessions")?, create("audit")?],
                [create("outbox_by_node")?, create("settled")?],
            );
            Ok(CommitOrAbort::<_, ()>::Commit(all))
        })?;
        let Some((
            [nodes, agent_tokens, enroll_tokens, api_keys],
            [events, alerts, outbox, deadlines, meta],
            [users, sessions, audit],
            [outbox_by_node, settled],
        )) = created.commit()
        else {
            unreachable!("the closure above always commits")
        };
        let dbs = Dbs {
            nodes,
            agent_tokens,
            enroll_tokens,
            api_keys,
            events,
            alerts,
            outbox,
            outbox_by_node,
            settled,
            deadlines,
            meta,
            users,
            sessions,
            audit,
        };
        let store = Store { env, dbs, max_map: round_to_page(config.max_map), resizing: RwLock::new(()) };
        store.write(|txn| txn.index_alerts())?;
        Ok(store)
    }

    /// Runs `work` in one write transaction and, if `work` wrote anything, commits it
    /// durably: on disk when this returns.
    ///
    /// `work` may run more than once: after the map grows, it starts again on a fresh
    /// transaction, so it must not have effects outside the transaction until this returns.
    pub fn write<R>(&self, work: impl FnMut(&mut Txn<RwTxn>) -> Result<R, Error>) -> Result<R, Error> {
        let (result, wrote) = self.commit(work)?;
        if wrote {
            self.sync()?;
        }
        Ok(result)
    }

    /// Like `write`, but the commit is durable only after the next `sync` (or the next
    /// commit) returns. Other transactions see it at once; nothing that depends on it may
    /// leave the process before that `sync`.
    pub fn write_unsynced<R>(&self, work: impl FnMut(&mut Txn<RwTxn>) -> Result<R, Error>) -> Result<R, Error> {
        self.commit(work).map(|(result, _)| result)
    }

    /// Flushes every commit so far to disk.
    pub fn sync(&self) -> Result<(), Error> {
        // LMDB reads the meta page (in the map) to know how far to sync: not while a
        // resize has the map unmapped.
        let _shared = self.resizing.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(self.env.force_sync()?)
    }

    fn commit<R>(&self, mut work: impl FnMut(&mut Txn<RwTxn>) -> Result<R, Error>) -> Result<(R, bool), Error> {
        loop {
            let outcome = self.try_write(&mut work);
            match outcome {
                Err(Error::Lmdb(heed::Error::Mdb(MdbError::MapFull))) => self.grow()?,
                Err(Error::Lmdb(heed::Error::Mdb(MdbError::MapResized))) => self.adopt_size()?,
                other => return other,
            }
        }
    }

    fn try_write<R>(&self, work: &mut impl FnMut(&mut Txn<RwTxn>) -> Result<R, Error>) -> Result<(R, bool), Error> {
        let _shared = self.resizing.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut txn = Txn { raw: self.env.write_txn()?, dbs: &self.dbs, wrote: false, alerts_written: 0 };
        let result = work(&mut txn)?;
        if txn.wrote {
            txn.raw.commit()?;
        }
        Ok((result, txn.wrote))
    }

    /// Runs `work` on a read-only snapshot.
    pub fn read<R>(&self, mut work: impl FnMut(&Txn<RoTxn<WithoutTls>>) -> Result<R, Error>) -> Result<R, Error> {
        loop {
            let shared = self.resizing.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            match self.env.read_txn() {
                Err(heed::Error::Mdb(MdbError::MapResized)) => drop(shared),
                Err(e) => return Err(e.into()),
                Ok(raw) => return work(&Txn { raw, dbs: &self.dbs, wrote: false, alerts_written: 0 }),
            }
            self.adopt_size()?;
        }
    }

    fn grow(&self) -> Result<(), Error> {
        // Everything that reads the map (info reads the meta page) waits out a resize:
        // another thread may be growing it right now.
        let _exclusive = self.resizing.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.env.info().map_size;
        if current >= self.max_map {
            return Err(Error::Full);
        }
        let next = (current * 2).min(self.max_map);
        log::info!("database map is full at {} MiB; growing it to {} MiB", current >> 20, next >> 20);
        // SAFETY: no transaction of this process is open, and nothing reads the map: each
        // holds `resizing` shared.
        unsafe { self.env.resize(next)? };
        Ok(())
    }

    /// Another process grew the map; take its size.
    fn adopt_size(&self) -> Result<(), Error> {
        let _exclusive = self.resizing.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: as in `grow`; size 0 means "the size the file now has".
        unsafe { self.env.resize(0)? };
        Ok(())
    }

    /// Bytes the data file takes on disk.
    pub fn disk_size(&self) -> u64 {
        self.env.real_disk_size().unwrap_or(0)
    }

    pub fn path(&self) -> &Path {
        self.env.path()
    }
}

/// Whether LMDB can hold `key`: not empty, and at most 511 bytes (its default maximum).
fn storable(key: &[u8]) -> bool {
    (1..=511).contains(&key.len())
}

fn deadline_key(when: i64, node_id: &str) -> Vec<u8> {
    let mut key = when.to_be_bytes().to_vec();
    key.extend_from_slice(node_id.as_bytes());
    key
}

fn outbox_by_node_key(node_id: &str, alert_id: u64) -> Vec<u8> {
    let mut key = node_id.as_bytes().to_vec();
    key.extend_from_slice(&alert_id.to_be_bytes());
    key
}

fn setting_key(name: &str) -> String {
    format!("setting:{name}")
}

fn round_to_page(bytes: usize) -> usize {
    // 64 KiB is a multiple of every page size Linux uses (4, 16 and 64 KiB).
    const STEP: usize = 64 << 10;
    bytes.div_ceil(STEP).max(1) * STEP
}

/// A transaction over the store: read-only (`RoTxn`) or read-write (`RwTxn`).
pub struct Txn<'e, T> {
    raw: T,
    dbs: &'e Dbs,
    wrote: bool,
    alerts_written: usize,
}

/// What both kinds of transaction can read through.
pub trait ReadTxn {
    fn ro(&self) -> &RoTxn<'_, WithoutTls>;
}

impl ReadTxn for RoTxn<'_, WithoutTls> {
    fn ro(&self) -> &RoTxn<'_, WithoutTls> {
        self
    }
}

impl ReadTxn for RwTxn<'_> {
    fn ro(&self) -> &RoTxn<'_, WithoutTls> {
        self
    }
}

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

    /// Hands `visit` every node in id order, with only what its status needs
    /// (`codec::decode_node_status`), one at a time: for reading the whole fleet fast.
    /// These partial records are never to be saved.
    pub fn each_node_status(&self, mut visit: impl FnMut(NodeRecord)) -> Result<(), Error> {
        for entry in self.dbs.nodes.iter(self.raw.ro())? {
            let (_, value) = entry?;
            visit(codec::decode_node_status(value).ok_or_else(|| corrupt_node(value))?);
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

    /// Up to `limit` audit entries older than entry `before` (or the newest), newest
    /// first; and whether older ones follow.
    pub fn audit_page(&self, before: Option<u64>, limit: usize) -> Result<(Vec<AuditRecord>, bool), Error> {
        let end = before.map(u64::to_be_bytes);
        let range = (
            std::ops::Bound::Unbounded,
            end.as_ref().map_or(std::ops::Bound::Unbounded, |k| std::ops::Bound::Excluded(&k[..])),
        );
        let mut out = Vec::new();
        for entry in self.dbs.audit.rev_range(self.raw.ro(), &range)? {
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(decode(entry?.1)?);
        }
        Ok((out, false))
    }

    /// Every record of `db`, with its key as `key` reads it.
    fn all<K, V: Deserialize>(&self, db: Database, key: impl Fn(&[u8]) -> Option<K>) -> Result<Vec<(K, V)>, Error> {
        let mut out = Vec::new();
        for entry in db.iter(self.raw.ro())? {
            let (raw_key, value) = entry?;
            let key = key(raw_key).ok_or_else(|| Error::Corrupt(format!("a {}-byte key", raw_key.len())))?;
            out.push((key, decode(value)?));
        }
        Ok(out)
    }

    /// Events after `since` (Unix ms), oldest first, for one node or all, at most `limit`.
    pub fn events(&self, node_id: Option<&str>, since: i64, limit: usize) -> Result<Vec<EventRecord>, Error> {
        let txn = self.raw.ro();
        let mut out: Vec<EventRecord> = Vec::new();
        let mut take = |value: &[u8]| -> Result<(), Error> {
            let event: EventRecord = decode(value)?;
            if event.at > since {
                out.push(event);
            }
            Ok(())
        };
        match node_id {
            Some(id) if !storable(id.as_bytes()) => {}
            Some(id) => {
                for entry in self.dbs.events.prefix_iter(txn, id.as_bytes())? {
                    take(entry?.1)?;
                }
            }
            None => {
                for entry in self.dbs.events.iter(txn)? {
                    take(entry?.1)?;
                }
            }
        }
        out.sort_by_key(|e| (e.at, e.id));
        out.truncate(limit);
        Ok(out)
    }

    /// A setting kept in `meta` (see [`setting`]); `None` if never written.
    pub fn setting<V: Deserialize>(&self, name: &str) -> Result<Option<V>, Error> {
        self.get(self.dbs.meta, setting_key(name).as_bytes())
    }

    /// The newest alerts first, at most `limit`.
    pub fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>, Error> {
        let mut out = Vec::new();
        for entry in self.dbs.alerts.rev_iter(self.raw.ro())?.take(limit) {
            out.push(decode(entry?.1)?);
        }
        Ok(out)
    }

    pub fn alert(&self, id: u64) -> Result<Option<AlertRecord>, Error> {
        self.get(self.dbs.alerts, &id.to_be_bytes())
    }

    /// The ids of alerts not yet settled, oldest first.
    pub fn outbox(&self) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        for entry in self.dbs.outbox.iter(self.raw.ro())? {
            let key = entry?.0;
            out.push(u64::from_be_bytes(key.try_into().map_err(|_| Error::Corrupt("outbox key".into()))?));
        }
        Ok(out)
    }

    /// The ids of one node's alerts in the outbox, oldest first.
    pub fn outbox_of(&self, node_id: &str) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        if !storable(node_id.as_bytes()) {
            return Ok(out);
        }
        for entry in self.dbs.outbox_by_node.prefix_iter(self.raw.ro(), node_id.as_bytes())? {
            let key = entry?.0;
            // The prefix also finds longer node ids that start with this one; the length tells them apart.
            if key.len() != node_id.len() + 8 {
                continue;
            }
            let id: [u8; 8] =
                key[node_id.len()..].try_into().map_err(|_| Error::Corrupt("outbox_by_node key".into()))?;
            out.push(u64::from_be_bytes(id));
        }
        Ok(out)
    }

    /// The bytes each database's pages take, by name.
    pub fn database_bytes(&self) -> Result<Vec<(&'static str, u64)>, Error> {
        let d = &self.dbs;
        let all = [
            ("nodes", d.nodes),
            ("agent_tokens", d.agent_tokens),
            ("enroll_tokens", d.enroll_tokens),
            ("api_keys", d.api_keys),
            ("events", d.events),
            ("alerts", d.alerts),
            ("outbox", d.outbox),
            ("outbox_by_node", d.outbox_by_node),
            ("settled", d.settled),
            ("deadlines", d.deadlines),
            ("meta", d.meta),
            ("users", d.users),
            ("sessions", d.sessions),
            ("audit", d.audit),
        ];
        let mut out = Vec::with_capacity(all.len());
        for (name, db) in all {
            let stat = db.stat(self.raw.ro())?;
            let pages = stat.branch_pages + stat.leaf_pages + stat.overflow_pages;
            out.push((name, pages as u64 * u64::from(stat.page_size)));
        }
        Ok(out)
    }

    /// Whether any node is watched (has a deadline) or any alert waits for delivery.
    pub fn busy(&self) -> Result<bool, Error> {
        let txn = self.raw.ro();
        Ok(self.dbs.deadlines.first(txn)?.is_some() || self.dbs.outbox.first(txn)?.is_some())
    }

    /// Nodes whose deadline is at or before `now`, earliest first.
    pub fn due_nodes(&self, now: i64) -> Result<Vec<(i64, String)>, Error> {
        let mut out = Vec::new();
        for entry in self.dbs.deadlines.iter(self.raw.ro())? {
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

    /// A key LMDB cannot hold (empty, or over 511 bytes) is simply not there: names and
    /// ids come from requests, and must not turn into a storage error.
    fn get<V: Deserialize>(&self, db: Database, key: &[u8]) -> Result<Option<V>, Error> {
        self.get_with(db, key, decode)
    }

    fn get_with<V>(&self, db: Database, key: &[u8], decode: fn(&[u8]) -> Result<V, Error>) -> Result<Option<V>, Error> {
        if !storable(key) {
            return Ok(None);
        }
        db.get(self.raw.ro(), key)?.map(decode).transpose()
    }
}

impl Txn<'_, RwTxn<'_>> {
    pub fn put_node(&mut self, node: &NodeRecord) -> Result<(), Error> {
        self.wrote = true;
        Ok(self.dbs.nodes.put(&mut self.raw, node.node_id.as_bytes(), &codec::encode_node(node))?)
    }

    /// Saves a node whose deadline was `previous`, moving it in the deadline index if it changed.
    pub fn save_node(&mut self, node: &NodeRecord, previous: Option<i64>) -> Result<(), Error> {
        if previous != node.deadline {
            if let Some(old) = previous {
                self.dbs.deadlines.delete(&mut self.raw, &deadline_key(old, &node.node_id))?;
            }
            if let Some(new) = node.deadline {
                self.dbs.deadlines.put(&mut self.raw, &deadline_key(new, &node.node_id), &[])?;
            }
        }
        self.put_node(node)
    }

    /// Writes a setting into `meta` (see [`setting`]).
    pub fn put_setting<V: Serialize>(&mut self, name: &str, value: &V) -> Result<(), Error> {
        self.put(self.dbs.meta, setting_key(name).as_bytes(), value)
    }

    /// How many unsettled alerts this transaction put in the outbox.
    pub fn alerts_written(&self) -> usize {
        self.alerts_written
    }

    /// A fresh id for an event or alert, increasing across restarts.
    pub fn next_id(&mut self) -> Result<u64, Error> {
        let last = match self.dbs.meta.get(&self.raw, b"next_id")? {
            Some(bytes) => u64::from_be_bytes(bytes.try_into().map_err(|_| Error::Corrupt("next_id".into()))?),
            None => 0,
        };
        self.dbs.meta.put(&mut self.raw, b"next_id", &(last + 1).to_be_bytes())?;
        self.wrote = true;
        Ok(last + 1)
    }

    /// Stores an event, dropping the node's oldest beyond [`EVENTS_PER_NODE`].
    pub fn put_event(&mut self, event: &EventRecord) -> Result<(), Error> {
        let mut key = event.node_id.clone().into_bytes();
        key.extend_from_slice(&event.id.to_be_bytes());
        self.put(self.dbs.events, &key, event)?;
        let count = self.dbs.events.prefix_iter(&self.raw, event.node_id.as_bytes())?.count();
        if count > EVENTS_PER_NODE {
            let mut doomed = Vec::new();
            for entry in self.dbs.events.prefix_iter(&self.raw, event.node_id.as_bytes())?.take(count - EVENTS_PER_NODE)
            {
                doomed.push(entry?.0.to_vec());
            }
            for key in doomed {
                self.dbs.events.delete(&mut self.raw, &key)?;
            }
        }
        Ok(())
    }

    /// Drops events that happened before `cutoff` (Unix ms); returns how many.
    pub fn prune_events(&mut self, cutoff: i64) -> Result<usize, Error> {
        let mut doomed = Vec::new();
        for entry in self.dbs.events.iter(&self.raw)? {
            let (key, value) = entry?;
            let event: EventRecord = decode(value)?;
            if event.at < cutoff {
                doomed.push(key.to_vec());
            }
        }
        for key in &doomed {
            self.dbs.events.delete(&mut self.raw, key)?;
        }
        self.wrote |= !doomed.is_empty();
        Ok(doomed.len())
    }

    /// Stores an alert; an unsettled one goes into the outbox, a settled one leaves it.
    /// Past [`ALERTS_KEPT`] settled alerts, the oldest settled one is dropped: the first key
    /// of `settled`, never a walk over the alerts.
    pub fn put_alert(&mut self, alert: &AlertRecord) -> Result<(), Error> {
        let key = alert.id.to_be_bytes();
        let by_node = outbox_by_node_key(&alert.node_id, alert.id);
        self.put(self.dbs.alerts, &key, alert)?;
        if alert.is_settled() {
            self.dbs.outbox.delete(&mut self.raw, &key)?;
            if storable(&by_node) {
                self.dbs.outbox_by_node.delete(&mut self.raw, &by_node)?;
            }
            self.dbs.settled.put(&mut self.raw, &key, &[])?;
        } else {
            self.dbs.outbox.put(&mut self.raw, &key, &[])?;
            if storable(&by_node) {
                self.dbs.outbox_by_node.put(&mut self.raw, &by_node, &[])?;
            }
            self.alerts_written += 1;
        }
        while self.dbs.settled.len(&self.raw)? as usize > ALERTS_KEPT {
            let Some((oldest, _)) = self.dbs.settled.first(&self.raw)? else { break };
            let oldest = oldest.to_vec();
            self.dbs.settled.delete(&mut self.raw, &oldest)?;
            self.dbs.alerts.delete(&mut self.raw, &oldest)?;
        }
        Ok(())
    }

    /// Builds `settled` and `outbox_by_node` from `alerts` and `outbox` when they disagree:
    /// once, for a store written before they existed.
    fn index_alerts(&mut self) -> Result<(), Error> {
        let (alerts, outbox) = (self.dbs.alerts.len(&self.raw)?, self.dbs.outbox.len(&self.raw)?);
        let (settled, by_node) = (self.dbs.settled.len(&self.raw)?, self.dbs.outbox_by_node.len(&self.raw)?);
        if settled + outbox == alerts && by_node == outbox {
            return Ok(());
        }
        self.wrote = true;
        self.dbs.settled.clear(&mut self.raw)?;
        self.dbs.outbox_by_node.clear(&mut self.raw)?;
        let mut index = Vec::new();
        for entry in self.dbs.alerts.iter(&self.raw)? {
            let (key, value) = entry?;
            let pending = self.dbs.outbox.get(&self.raw, key)?.is_some();
            // A record this version cannot read is left out of the per-node index, not fatal.
            let node_id = pending.then(|| decode::<AlertRecord>(value).ok().map(|a| a.node_id)).flatten();
            index.push((key.to_vec(), pending, node_id));
        }
        for (key, pending, node_id) in index {
            if !pending {
                self.dbs.settled.put(&mut self.raw, &key, &[])?;
            } else if let Some(node_id) = node_id {
                let id = u64::from_be_bytes(key.as_slice().try_into().map_err(|_| Error::Corrupt("alert key".into()))?);
                let by_node = outbox_by_node_key(&node_id, id);
                if storable(&by_node) {
                    self.dbs.outbox_by_node.put(&mut self.raw, &by_node, &[])?;
                }
            }
        }
        log::info!("indexed {alerts} alerts ({outbox} waiting) for trimming and the per-node outbox cap");
        Ok(())
    }

    pub fn put_agent_token(&mut self, token_hash: &[u8; 32], node_id: &str) -> Result<(), Error> {
        self.wrote = true;
        Ok(self.dbs.agent_tokens.put(&mut self.raw, token_hash, node_id.as_bytes())?)
    }

    pub fn delete_agent_token(&mut self, token_hash: &[u8; 32]) -> Result<(), Error> {
        self.wrote = true;
        self.dbs.agent_tokens.delete(&mut self.raw, token_hash)?;
        Ok(())
    }

    pub fn put_enroll_token(&mut self, token_hash: &[u8; 32], record: &EnrollTokenRecord) -> Result<(), Error> {
        self.put(self.dbs.enroll_tokens, token_hash, record)
    }

    pub fn delete_enroll_token(&mut self, token_hash: &[u8; 32]) -> Result<(), Error> {
        self.delete(self.dbs.enroll_tokens, token_hash)
    }

    pub fn put_api_key(&mut self, key_hash: &[u8; 32], record: &ApiKeyRecord) -> Result<(), Error> {
        self.put(self.dbs.api_keys, key_hash, record)
    }

    /// Removes a node with everything that hangs off it: its agent token (so its next
    /// heartbeat gets 401), its place in the deadline index, and its events.
    pub fn delete_node(&mut self, node: &NodeRecord) -> Result<(), Error> {
        if let Some(hash) = node.token_hash.as_deref().and_then(crate::secret::unhex32) {
            self.delete_agent_token(&hash)?;
        }
        if let Some(deadline) = node.deadline {
            self.delete(self.dbs.deadlines, &deadline_key(deadline, &node.node_id))?;
        }
        let mut doomed = Vec::new();
        for entry in self.dbs.events.prefix_iter(&self.raw, node.node_id.as_bytes())? {
            doomed.push(entry?.0.to_vec());
        }
        for key in doomed {
            self.delete(self.dbs.events, &key)?;
        }
        self.delete(self.dbs.nodes, node.node_id.as_bytes())
    }

    pub fn put_user(&mut self, user: &UserRecord) -> Result<(), Error> {
        self.put(self.dbs.users, user.name.as_bytes(), user)
    }

    /// Ends every session of one user; returns how many there were.
    pub fn delete_sessions_of(&mut self, name: &str) -> Result<usize, Error> {
        let sessions: Vec<([u8; 32], SessionRecord)> = self.all(self.dbs.sessions, |k| k.try_into().ok())?;
        let theirs: Vec<_> = sessions.iter().filter(|(_, s)| s.user == name).collect();
        for (hash, _) in &theirs {
            self.delete(self.dbs.sessions, hash)?;
        }
        Ok(theirs.len())
    }

    /// Removes a user, their sessions and their API keys.
    pub fn delete_user(&mut self, name: &str) -> Result<(), Error> {
        self.delete_sessions_of(name)?;
        let keys: Vec<([u8; 32], ApiKeyRecord)> = self.all(self.dbs.api_keys, |k| k.try_into().ok())?;
        for (hash, _) in keys.iter().filter(|(_, k)| k.user.as_deref() == Some(name)) {
            self.delete(self.dbs.api_keys, hash)?;
        }
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
        let sessions: Vec<([u8; 32], SessionRecord)> = self.all(self.dbs.sessions, |k| k.try_into().ok())?;
        let tokens = self.enroll_tokens()?;
        let mut pruned = 0;
        for (hash, _) in sessions.iter().filter(|(_, s)| s.expires_at <= now) {
            self.delete(self.dbs.sessions, hash)?;
            pruned += 1;
        }
        for (hash, _) in tokens.iter().filter(|(_, t)| t.used_at.unwrap_or(t.expires_at) < cutoff) {
            self.delete(self.dbs.enroll_tokens, hash)?;
            pruned += 1;
        }
        Ok(pruned)
    }

    /// Appends an entry to the audit log (its id is assigned here), dropping the oldest
    /// beyond [`AUDIT_KEPT`]: one, as each entry comes.
    pub fn put_audit(&mut self, mut entry: AuditRecord) -> Result<(), Error> {
        entry.id = self.next_id()?;
        self.put(self.dbs.audit, &entry.id.to_be_bytes(), &entry)?;
        if self.dbs.audit.len(&self.raw)? as usize > AUDIT_KEPT {
            if let Some(oldest) = self.dbs.audit.first(&self.raw)?.map(|(key, _)| key.to_vec()) {
                self.delete(self.dbs.audit, &oldest)?;
            }
        }
        Ok(())
    }

    /// Drops audit entries made before `cutoff`; returns how many.
    pub fn prune_audit(&mut self, cutoff: i64) -> Result<usize, Error> {
        let mut doomed = Vec::new();
        for found in self.dbs.audit.iter(&self.raw)? {
            let (key, value) = found?;
            if decode::<AuditRecord>(value)?.at >= cutoff {
                break;
            }
            doomed.push(key.to_vec());
        }
        for key in &doomed {
            self.delete(self.dbs.audit, key)?;
        }
        Ok(doomed.len())
    }

    fn delete(&mut self, db: Database, key: &[u8]) -> Result<(), Error> {
        self.wrote = true;
        db.delete(&mut self.raw, key)?;
        Ok(())
    }

    fn put<V: Serialize>(&mut self, db: Database, key: &[u8], value: &V) -> Result<(), Error> {
        self.wrote = true;
        Ok(db.put(&mut self.raw, key, json::to_string(value).as_bytes())?)
    }
}

fn decode_node(bytes: &[u8]) -> Result<NodeRecord, Error> {
    codec::decode_node(bytes).ok_or_else(|| corrupt_node(bytes))
}

fn corrupt_node(bytes: &[u8]) -> Error {
    Error::Corrupt(format!("cannot decode a {}-byte node record", bytes.len()))
}

fn decode<V: Deserialize>(bytes: &[u8]) -> Result<V, Error> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| json::from_str(text).ok())
        .ok_or_else(|| Error::Corrupt(format!("cannot decode a {}-byte record", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: usize, padding: usize) -> NodeRecord {
        NodeRecord { node_id: format!("node-{id:06}"), hostname: "h".repeat(padding), ..Default::default() }
    }

    /// The flusher syncs while the request thread grows the map: a sync that read the
    /// meta page while the map was being replaced crashed the collector (SIGSEGV).
    #[test]
    fn syncing_while_the_map_grows_is_safe() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig { dir: dir.path().into(), initial_map: 64 << 10, max_map: 256 << 20 };
        let store = Store::open(&config).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    store.sync().unwrap();
                    let _ = store.disk_size();
                }
            });
            for batch in 0..400 {
                store
                    .write_unsynced(|txn| {
                        for i in 0..10 {
                            txn.put_node(&node(batch * 10 + i, 4000))?;
                        }
                        Ok(())
                    })
                    .unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        assert!(store.env.info().map_size >= 16 << 20, "the map should have grown many times");
    }

    #[test]
    fn the_map_grows_when_full_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig { dir: dir.path().into(), initial_map: 256 << 10, max_map: 64 << 20 };
        let store = Store::open(&config).unwrap();
        for batch in 0..40 {
            store
                .write(|txn| {
                    for i in 0..50 {
                        txn.put_node(&node(batch * 50 + i, 2000))?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        assert!(store.env.info().map_size > 256 << 10, "the map should have grown");
        assert_eq!(store.read(|txn| txn.node_count()).unwrap(), 2000);
    }

    #[test]
    fn a_full_map_at_its_limit_fails_cleanly_and_keeps_what_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig { dir: dir.path().into(), initial_map: 256 << 10, max_map: 256 << 10 };
        let store = Store::open(&config).unwrap();
        let mut committed = 0;
        let err = loop {
            match store.write(|txn| txn.put_node(&node(committed, 2000))) {
                Ok(()) => committed += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::Full), "{err}");
        assert_eq!(store.read(|txn| txn.node_count()).unwrap(), committed as u64);
        drop(store);
        let reopened = Store::open(&config).unwrap();
        assert_eq!(reopened.read(|txn| txn.node_count()).unwrap(), committed as u64);
    }

    fn alert(id: u64, node: &str, pending: bool) -> AlertRecord {
        use crate::model::{Delivery, DeliveryState, EventKind};
        let state = if pending { DeliveryState::Pending } else { DeliveryState::Delivered };
        AlertRecord {
            id,
            kind: EventKind::Offline,
            node_id: node.into(),
            name: node.into(),
            hostname: "h".into(),
            tags: Vec::new(),
            check: None,
            checks: None,
            detail: String::new(),
            at: 0,
            down_since: None,
            deliveries: vec![Delivery {
                channel: "hook".into(),
                state,
                attempts: 0,
                next_attempt: 0,
                last_error: None,
                delivered_at: None,
            }],
        }
    }

    /// The history keeps the newest settled alerts; waiting ones are never dropped by it,
    /// and a store from before the indexes gets them when opened.
    #[test]
    fn settled_alerts_are_trimmed_oldest_first_and_waiting_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(dir.path(), 256 << 20);
        let store = Store::open(&config).unwrap();
        let extra = 10u64;
        store
            .write(|txn| {
                for id in 1..=20 {
                    txn.put_alert(&alert(id, if id % 2 == 0 { "node-a" } else { "node-b" }, true))?;
                }
                for id in 21..=20 + ALERTS_KEPT as u64 + extra {
                    txn.put_alert(&alert(id, "node-a", false))?;
                }
                Ok(())
            })
            .unwrap();
        let (outbox, of_a, oldest_settled, newest) = store
            .read(|txn| Ok((txn.outbox()?, txn.outbox_of("node-a")?, txn.alert(21 + extra - 1)?, txn.alerts(1)?)))
            .unwrap();
        assert_eq!(outbox, (1..=20).collect::<Vec<u64>>(), "waiting alerts were dropped");
        assert_eq!(of_a, (2..=20).step_by(2).collect::<Vec<u64>>());
        assert!(oldest_settled.is_none(), "the oldest settled alerts should be gone");
        assert_eq!(newest[0].id, 20 + ALERTS_KEPT as u64 + extra);
        assert_eq!(store.read(|txn| txn.alerts(usize::MAX)).unwrap().len(), 20 + ALERTS_KEPT);

        // A store written before `settled` and `outbox_by_node` existed.
        store
            .write(|txn| {
                txn.dbs.settled.clear(&mut txn.raw)?;
                txn.dbs.outbox_by_node.clear(&mut txn.raw)?;
                txn.wrote = true;
                Ok(())
            })
            .unwrap();
        drop(store);
        let store = Store::open(&config).unwrap();
        assert_eq!(store.read(|txn| txn.outbox_of("node-b")).unwrap(), (1..=19).step_by(2).collect::<Vec<u64>>());
        store.write(|txn| txn.put_alert(&alert(100_000, "node-c", false))).unwrap();
        assert!(store.read(|txn| txn.alert(21 + extra)).unwrap().is_none(), "trimming works after the rebuild");
    }

    #[test]
    fn work_that_writes_nothing_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap();
        let before = store.env.info().last_txn_id;
        store.write(|txn| txn.node("nobody")).unwrap();
        assert_eq!(store.env.info().last_txn_id, before);
    }
}
