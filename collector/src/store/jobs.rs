//! Jobs, their last pings (a ring of `jobs::PINGS_KEPT` per job), the indexes that find a
//! job by its ping UUID or slug, the index of their deadlines that the sweep reads, and
//! the per-collector ping key (stored as SHA-256 only).

use super::{deadline_key, decode, storable, Error, ReadTxn, RwTxn, Scan, Txn};
use crate::jobs::PINGS_KEPT;
use crate::model::{JobRecord, PingRecord};

/// The `meta` key of the SHA-256 of the ping key.
const PING_KEY: &[u8] = b"ping_key_sha256";

fn ping_key(job_id: &str, n: u64) -> Vec<u8> {
    let mut key = job_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&n.to_be_bytes());
    key
}

fn ping_prefix(job_id: &str) -> Vec<u8> {
    let mut key = job_id.as_bytes().to_vec();
    key.push(0);
    key
}

impl<T: ReadTxn> Txn<'_, T> {
    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, Error> {
        self.get(self.dbs.jobs, id.as_bytes())
    }

    /// The job whose ping URL holds `uuid`.
    pub fn job_by_uuid(&self, uuid: &str) -> Result<Option<JobRecord>, Error> {
        self.job_by(self.dbs.job_uuids, uuid)
    }

    pub fn job_by_slug(&self, slug: &str) -> Result<Option<JobRecord>, Error> {
        self.job_by(self.dbs.job_slugs, slug)
    }

    fn job_by(&self, index: super::Database, key: &str) -> Result<Option<JobRecord>, Error> {
        let Some(id) = self.get_with(index, key.as_bytes(), |b| Ok(b.to_vec()))? else { return Ok(None) };
        self.job(&String::from_utf8_lossy(&id))
    }

    /// Every job, by id.
    pub fn jobs(&self) -> Result<Vec<JobRecord>, Error> {
        Ok(self.all(self.dbs.jobs, |_| Some(()))?.into_iter().map(|((), job)| job).collect())
    }

    pub fn job_count(&self) -> Result<u64, Error> {
        Ok(self.dbs.jobs.len(self.raw.ro())?)
    }

    /// A job's kept pings, newest first, at most `limit`.
    pub fn job_pings(&self, job_id: &str, limit: usize) -> Result<Vec<PingRecord>, Error> {
        let mut out = Vec::new();
        for entry in self.dbs.job_pings.rev_prefix_iter(self.raw.ro(), &ping_prefix(job_id))? {
            if out.len() == limit {
                break;
            }
            out.push(decode(entry?.1)?);
        }
        Ok(out)
    }

    /// One kept ping, by its number.
    pub fn job_ping(&self, job_id: &str, n: u64) -> Result<Option<PingRecord>, Error> {
        self.get(self.dbs.job_pings, &ping_key(job_id, n))
    }

    /// Up to `limit` jobs whose deadline is at or before `now`, earliest first.
    pub fn due_jobs(&self, now: i64, limit: usize) -> Result<Vec<(i64, String)>, Error> {
        let mut out = Vec::new();
        for entry in self.dbs.job_deadlines.iter(self.raw.ro())?.take(limit) {
            let key = entry?.0;
            let (when, id) = key.split_at_checked(8).ok_or_else(|| Error::Corrupt("job deadline key".into()))?;
            let when = i64::from_be_bytes(when.try_into().expect("8 bytes"));
            if when > now {
                break;
            }
            out.push((when, String::from_utf8_lossy(id).into_owned()));
        }
        Ok(out)
    }

    /// The SHA-256 of the ping key, if one was made.
    pub fn ping_key_hash(&self) -> Result<Option<[u8; 32]>, Error> {
        Ok(self.get_with(self.dbs.meta, PING_KEY, |b| Ok(b.to_vec()))?.and_then(|b| b.try_into().ok()))
    }
}

impl Txn<'_, RwTxn<'_>> {
    /// Drops an entry of the job deadline index that is not its job's deadline (or whose
    /// job is gone), and makes sure the job's own deadline has its entry.
    pub fn repair_job_deadline(&mut self, when: i64, job_id: &str, deadline: Option<i64>) -> Result<(), Error> {
        self.move_deadline(self.dbs.job_deadlines, job_id, Some(when), deadline)
    }

    /// Saves a job whose deadline was `previous`, moving it in the deadline index if it changed.
    /// A new job (`previous_slug` `None`) is indexed by its UUID too.
    pub fn save_job(
        &mut self,
        job: &JobRecord,
        previous: Option<i64>,
        previous_slug: Option<&str>,
    ) -> Result<(), Error> {
        self.move_deadline(self.dbs.job_deadlines, &job.id, previous, job.deadline)?;
        match previous_slug {
            None => {
                self.put_bytes(self.dbs.job_uuids, job.uuid.as_bytes(), job.id.as_bytes())?;
                self.put_bytes(self.dbs.job_slugs, job.slug.as_bytes(), job.id.as_bytes())?;
            }
            Some(old) if old != job.slug => {
                self.delete(self.dbs.job_slugs, old.as_bytes())?;
                self.put_bytes(self.dbs.job_slugs, job.slug.as_bytes(), job.id.as_bytes())?;
            }
            Some(_) => {}
        }
        self.put(self.dbs.jobs, job.id.as_bytes(), job)
    }

    /// Keeps a ping, dropping the job's ping from [`PINGS_KEPT`] pings ago: one put and one
    /// delete, however many came before.
    pub fn put_job_ping(&mut self, job_id: &str, ping: &PingRecord) -> Result<(), Error> {
        if let Some(old) = ping.n.checked_sub(PINGS_KEPT) {
            self.delete(self.dbs.job_pings, &ping_key(job_id, old))?;
        }
        self.put(self.dbs.job_pings, &ping_key(job_id, ping.n), ping)
    }

    /// Removes a job with its pings, its events and its place in every index.
    pub fn delete_job(&mut self, job: &JobRecord) -> Result<(), Error> {
        if let Some(deadline) = job.deadline {
            self.delete(self.dbs.job_deadlines, &deadline_key(deadline, &job.id))?;
        }
        self.delete(self.dbs.job_uuids, job.uuid.as_bytes())?;
        if storable(job.slug.as_bytes()) {
            self.delete(self.dbs.job_slugs, job.slug.as_bytes())?;
        }
        self.delete_scan(self.dbs.job_pings, Some(&ping_prefix(&job.id)), |_, _| Ok(Scan::Delete))?;
        self.delete_scan(self.dbs.events, Some(job.id.as_bytes()), |_, _| Ok(Scan::Delete))?;
        self.delete(self.dbs.jobs, job.id.as_bytes())
    }

    pub fn put_ping_key_hash(&mut self, hash: &[u8; 32]) -> Result<(), Error> {
        self.put_bytes(self.dbs.meta, PING_KEY, hash)
    }
}
