//! The node store: one LMDB environment, and the only module that touches it.
//!
//! Every change happens inside one write transaction ([`Store::write`], or
//! [`Store::write_unsynced`] followed by [`Store::sync`]), committed and flushed to disk
//! before the caller answers anyone. Reads run on their own snapshots, beside it.
//! When the memory map fills, the transaction is thrown away, the map grows,
//! and the same work runs again from the start.
//!
//! This file holds the environment, the transactions and the low-level reads and writes;
//! the accessors live beside it by what they hold: `nodes.rs` (nodes and the deadline
//! index), `access.rs` (tokens, fleet keys and their devices, API keys, users, sessions), `history.rs` (events,
//! alerts and the outbox, the audit log, settings and the id counter), `hosts.rs` (Wrenn hosts), `jobs.rs`
//! (jobs, their pings and indexes), `spans.rs` (each node's uptime log), `holds.rs` (maintenance windows
//! and silences) and `pages.rs` (public status pages).

mod access;
mod history;
mod holds;
mod hosts;
mod jobs;
mod nodes;
mod pages;
mod spans;

pub use history::setting;

use crate::codec;
use crate::model::NodeRecord;
use heed::types::Bytes;
/// A write transaction, for the signatures of code that writes through [`Txn`].
pub use heed::RwTxn;
use heed::{CommitOrAbort, Env, EnvOpenOptions, MdbError, RoTxn, WithoutTls};
use miniserde::{json, Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

impl Error {
    /// An LMDB failure, for tests of what callers make of one.
    #[cfg(test)]
    pub fn lmdb_failure() -> Error {
        Error::Lmdb(heed::Error::Mdb(heed::MdbError::Panic))
    }
}

type Database = heed::Database<'static, Bytes, Bytes>;

struct Dbs {
    /// node id → [`NodeRecord`]
    nodes: Database,
    /// SHA-256 of an agent token → node id
    agent_tokens: Database,
    /// SHA-256 of an enrolment token → [`EnrollTokenRecord`](crate::model::EnrollTokenRecord)
    enroll_tokens: Database,
    /// SHA-256 of an API key → [`ApiKeyRecord`](crate::model::ApiKeyRecord)
    api_keys: Database,
    /// node id ++ event id (u64 BE) → [`EventRecord`](crate::model::EventRecord)
    events: Database,
    /// alert id (u64 BE) → [`AlertRecord`](crate::model::AlertRecord), delivered or not, for `GET /api/alerts`
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
    /// user name → [`UserRecord`](crate::model::UserRecord)
    users: Database,
    /// SHA-256 of a session cookie → [`SessionRecord`](crate::model::SessionRecord)
    sessions: Database,
    /// entry id (u64 BE) → [`AuditRecord`](crate::model::AuditRecord)
    audit: Database,
    /// SHA-256 of a fleet key → [`FleetKeyRecord`](crate::model::FleetKeyRecord)
    fleet_keys: Database,
    /// fleet key id ++ 0 ++ Beacon `device_name` → node id: the one node each device of a key has
    fleet_devices: Database,
    /// node id → [`HostRecord`](crate::model::HostRecord): the nodes that are Wrenn hosts
    hosts: Database,
    /// job id → [`JobRecord`](crate::model::JobRecord)
    jobs: Database,
    /// ping UUID → job id
    job_uuids: Database,
    /// slug → job id
    job_slugs: Database,
    /// job id ++ 0 ++ ping number (u64 BE) → [`PingRecord`](crate::model::PingRecord): the last 100 per job
    job_pings: Database,
    /// deadline (i64 BE, Unix ms) ++ job id → nothing: when the sweep looks at each job
    job_deadlines: Database,
    /// node id ++ start (i64 BE) → end (i64 BE) ++ cause (one byte): each node's uptime log
    /// ([`Span`](crate::model::Span)s); nothing for a node that never failed or stopped
    spans: Database,
    /// window id → [`MaintenanceRecord`](crate::model::MaintenanceRecord)
    maintenance: Database,
    /// silence id → [`SilenceRecord`](crate::model::SilenceRecord)
    silences: Database,
    /// slug → [`StatusPageRecord`](crate::model::StatusPageRecord)
    status_pages: Database,
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
    /// Commits made by this process so far. Each commit flushes the whole file, so the
    /// meta page of every earlier commit is on disk once a later one has returned.
    commits: AtomicU64,
}

impl Store {
    /// Whether `dir` holds a store (LMDB's `data.mdb`), for commands that only read one.
    pub fn exists(dir: &Path) -> bool {
        dir.join("data.mdb").is_file()
    }

    /// Opens (creating if needed) the store in `config.dir`.
    pub fn open(config: &StoreConfig) -> Result<Store, Error> {
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(round_to_page(config.initial_map)).max_dbs(32);
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
                [create("outbox_by_node")?, create("settled")?, create("fleet_keys")?, create("fleet_devices")?],
                [create("hosts")?],
                [create("jobs")?, create("job_uuids")?, create("job_slugs")?, create("job_pings")?],
                create("job_deadlines")?,
                [create("spans")?, create("maintenance")?, create("silences")?, create("status_pages")?],
            );
            Ok(CommitOrAbort::<_, ()>::Commit(all))
        })?;
        let Some((
            [nodes, agent_tokens, enroll_tokens, api_keys],
            [events, alerts, outbox, deadlines, meta],
            [users, sessions, audit],
            [outbox_by_node, settled, fleet_keys, fleet_devices],
            [hosts],
            [jobs, job_uuids, job_slugs, job_pings],
            job_deadlines,
            [spans, maintenance, silences, status_pages],
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
            fleet_keys,
            fleet_devices,
            hosts,
            jobs,
            job_uuids,
            job_slugs,
            job_pings,
            job_deadlines,
            spans,
            maintenance,
            silences,
            status_pages,
        };
        let store = Store {
            env,
            dbs,
            max_map: round_to_page(config.max_map),
            resizing: RwLock::new(()),
            commits: AtomicU64::new(0),
        };
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
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
        Ok((result, txn.wrote))
    }

    /// How many commits this process has made. A commit flushes its pages with one
    /// `fdatasync` of the file, after every earlier commit wrote its meta page: so once
    /// `commits()` has grown past the count read right after a commit, that commit is
    /// durable without a [`Store::sync`] of its own.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
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
        let exclusive = self.resizing.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.env.info().map_size;
        if current >= self.max_map {
            return Err(Error::Full);
        }
        self.double(&exclusive, current, "full")
    }

    /// Doubles the map from `current` (up to `max_map`), holding `resizing` exclusively.
    fn double(&self, _exclusive: &std::sync::RwLockWriteGuard<()>, current: usize, why: &str) -> Result<(), Error> {
        let next = (current * 2).min(self.max_map);
        log::info!("database map is {why} at {} MiB; growing it to {} MiB", current >> 20, next >> 20);
        // SAFETY: no transaction of this process is open, and nothing reads the map: each
        // holds `resizing` shared, which the caller holds exclusively.
        unsafe { self.env.resize(next)? };
        Ok(())
    }

    /// Grows the map ahead of need, once the file passes three quarters of it, but only
    /// at a moment when no transaction is open: a grow forced by a full map (`grow`) waits
    /// for every reader to finish, and the request thread waits with it; this one never
    /// waits. Whether it grew.
    pub fn grow_ahead(&self) -> Result<bool, Error> {
        let exclusive = match self.resizing.try_write() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
        };
        let current = self.env.info().map_size;
        if self.disk_size() < (current as u64 / 4) * 3 || current >= self.max_map {
            return Ok(false);
        }
        self.double(&exclusive, current, "three quarters full").map(|()| true)
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

fn fleet_device_key(key_id: &str, device_name: &str) -> Vec<u8> {
    let mut key = key_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(device_name.as_bytes());
    key
}

fn span_key(node_id: &str, start: i64) -> Vec<u8> {
    let mut key = node_id.as_bytes().to_vec();
    key.extend_from_slice(&start.to_be_bytes());
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
            ("fleet_keys", d.fleet_keys),
            ("fleet_devices", d.fleet_devices),
            ("hosts", d.hosts),
            ("jobs", d.jobs),
            ("job_uuids", d.job_uuids),
            ("job_slugs", d.job_slugs),
            ("job_pings", d.job_pings),
            ("job_deadlines", d.job_deadlines),
            ("spans", d.spans),
            ("maintenance", d.maintenance),
            ("silences", d.silences),
            ("status_pages", d.status_pages),
        ];
        let mut out = Vec::with_capacity(all.len());
        for (name, db) in all {
            let stat = db.stat(self.raw.ro())?;
            let pages = stat.branch_pages + stat.leaf_pages + stat.overflow_pages;
            out.push((name, pages as u64 * u64::from(stat.page_size)));
        }
        Ok(out)
    }

    /// Whether any node or job is watched (has a deadline) or any alert waits for delivery.
    pub fn busy(&self) -> Result<bool, Error> {
        let txn = self.raw.ro();
        let deadlines = self.dbs.deadlines.first(txn)?.is_some() || self.dbs.job_deadlines.first(txn)?.is_some();
        Ok(deadlines || self.dbs.outbox.first(txn)?.is_some())
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

/// Every change goes through these, and each marks the transaction dirty: a transaction
/// that is not marked is dropped, not committed (see `Store::try_write`).
impl Txn<'_, RwTxn<'_>> {
    fn delete(&mut self, db: Database, key: &[u8]) -> Result<(), Error> {
        self.remove(db, key).map(|_| ())
    }

    /// Deletes `key`; whether it was there (a key that was not changes nothing to commit).
    fn remove(&mut self, db: Database, key: &[u8]) -> Result<bool, Error> {
        let there = db.delete(&mut self.raw, key)?;
        self.wrote |= there;
        Ok(there)
    }

    fn put<V: Serialize>(&mut self, db: Database, key: &[u8], value: &V) -> Result<(), Error> {
        self.put_bytes(db, key, json::to_string(value).as_bytes())
    }

    fn put_bytes(&mut self, db: Database, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.wrote = true;
        Ok(db.put(&mut self.raw, key, value)?)
    }

    /// Moves `id`'s entry in a deadline index (`deadlines`, `job_deadlines`) from `from`
    /// to `to`; either may be none.
    fn move_deadline(&mut self, index: Database, id: &str, from: Option<i64>, to: Option<i64>) -> Result<(), Error> {
        if from == to {
            return Ok(());
        }
        if let Some(old) = from {
            self.delete(index, &deadline_key(old, id))?;
        }
        match to {
            Some(new) => self.put_bytes(index, &deadline_key(new, id), &[]),
            None => Ok(()),
        }
    }

    fn clear(&mut self, db: Database) -> Result<(), Error> {
        self.wrote = true;
        Ok(db.clear(&mut self.raw)?)
    }

    /// Deletes records of `db` from its first key for as long as `keep_going` says yes:
    /// the oldest, where keys are ids or times. Returns how many.
    fn delete_while(
        &mut self,
        db: Database,
        mut keep_going: impl FnMut(&[u8], &[u8]) -> Result<bool, Error>,
    ) -> Result<usize, Error> {
        self.delete_scan(db, None, |key, value| Ok(if keep_going(key, value)? { Scan::Delete } else { Scan::Stop }))
    }

    /// Walks `db` in key order, from its first key or the first under `prefix`, deleting
    /// what `judge` says to until it says [`Scan::Stop`]; returns how many were deleted.
    /// The keys are collected first and deleted after, since the walk borrows the transaction.
    fn delete_scan(
        &mut self,
        db: Database,
        prefix: Option<&[u8]>,
        mut judge: impl FnMut(&[u8], &[u8]) -> Result<Scan, Error>,
    ) -> Result<usize, Error> {
        let mut doomed = Vec::new();
        let mut visit = |entry: heed::Result<(&[u8], &[u8])>| -> Result<bool, Error> {
            let (key, value) = entry?;
            match judge(key, value)? {
                Scan::Delete => doomed.push(key.to_vec()),
                Scan::Keep => {}
                Scan::Stop => return Ok(false),
            }
            Ok(true)
        };
        match prefix {
            Some(prefix) => {
                for entry in db.prefix_iter(&self.raw, prefix)? {
                    if !visit(entry)? {
                        break;
                    }
                }
            }
            None => {
                for entry in db.iter(&self.raw)? {
                    if !visit(entry)? {
                        break;
                    }
                }
            }
        }
        for key in &doomed {
            self.delete(db, key)?;
        }
        Ok(doomed.len())
    }
}

/// What [`Txn::delete_scan`] does with each record it walks over.
enum Scan {
    Delete,
    Keep,
    /// Leave this record and every one after it.
    Stop,
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

    #[test]
    fn only_a_commit_that_wrote_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 64 << 20)).unwrap();
        let before = store.commits();
        store.write_unsynced(|txn| txn.node("nobody")).unwrap();
        assert_eq!(store.commits(), before, "a transaction that wrote nothing commits nothing");
        store.write_unsynced(|txn| txn.put_agent_token(&[7; 32], "n")).unwrap();
        assert_eq!(store.commits(), before + 1);
    }

    fn node(id: usize, padding: usize) -> NodeRecord {
        NodeRecord { node_id: format!("node-{id:06}"), hostname: "h".repeat(padding), ..Default::default() }
    }

    #[test]
    fn the_map_grows_ahead_of_need_only_while_nothing_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig { dir: dir.path().into(), initial_map: 1 << 20, max_map: 64 << 20 };
        let store = Store::open(&config).unwrap();
        assert!(!store.grow_ahead().unwrap(), "an empty store has room");
        let mut written = 0;
        while store.disk_size() < store.env.info().map_size as u64 / 4 * 3 {
            store.write(|txn| txn.put_node(&node(written, 4000))).unwrap();
            written += 1;
            assert!(written < 10_000, "the map should fill");
        }
        let before = store.env.info().map_size;
        let (reading, done) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                store
                    .read(|_| {
                        reading.wait();
                        done.wait();
                        Ok(())
                    })
                    .unwrap()
            });
            reading.wait();
            assert!(!store.grow_ahead().unwrap(), "a reader is in the map: not now");
            done.wait();
        });
        assert_eq!(store.env.info().map_size, before);
        assert!(store.grow_ahead().unwrap());
        assert_eq!(store.env.info().map_size, before * 2);
        assert_eq!(store.read(|txn| txn.node_count()).unwrap(), written as u64);
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

    #[test]
    fn work_that_writes_nothing_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap();
        let before = store.env.info().last_txn_id;
        store.write(|txn| txn.node("nobody")).unwrap();
        assert_eq!(store.env.info().last_txn_id, before);
    }
}
