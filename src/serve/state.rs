//! Where the service keeps its jobs and bases: SQLite in the store (one
//! replica, the default) or PostgreSQL shared by replicas (`[state] url`).
//! The service asks the same questions of either; only PostgreSQL has
//! leases (a single replica's running jobs are its own until it restarts).

use super::db::{BaseState, Db, DbError, Job};
use super::pg::Pg;
use std::sync::{Mutex, MutexGuard};

fn lock(db: &Mutex<Db>) -> MutexGuard<'_, Db> {
    db.lock().unwrap_or_else(|e| e.into_inner())
}

/// The state, local or shared.
pub enum State {
    /// SQLite in the store (`serve/state.db`).
    Local(Mutex<Db>),
    /// PostgreSQL, shared by replicas.
    Shared(Pg),
}

impl State {
    /// True when replicas share it.
    pub fn shared(&self) -> Option<&Pg> {
        match self {
            State::Shared(pg) => Some(pg),
            State::Local(_) => None,
        }
    }

    /// Queues a job for `target` (coalescing); the job and whether it is new.
    pub fn enqueue(&self, target: &str, trigger: &str) -> Result<(Job, bool), DbError> {
        match self {
            State::Shared(pg) => pg.enqueue(target, trigger),
            State::Local(db) => Ok(lock(db).enqueue(target, trigger)?),
        }
    }

    /// The next job to run, marked running: the oldest queued one whose
    /// target runs nowhere (`busy`: the targets this process runs, which
    /// is everywhere for a local state).
    pub fn claim(&self, busy: &[String]) -> Result<Option<Job>, DbError> {
        match self {
            State::Shared(pg) => pg.claim(busy),
            State::Local(db) => {
                let db = lock(db);
                let Some(job) = db.queued()?.into_iter().find(|j| !busy.contains(&j.target)) else {
                    return Ok(None);
                };
                Ok(db.start(job.id)?.then_some(job))
            }
        }
    }

    /// Records how job `id` ended.
    pub fn finish(
        &self,
        id: i64,
        status: &str,
        counts: (i64, i64),
        error: Option<&str>,
    ) -> Result<(), DbError> {
        match self {
            State::Shared(pg) => pg.finish(id, status, counts, error).map(drop),
            State::Local(db) => Ok(lock(db).finish(id, status, counts, error)?),
        }
    }

    /// Cancels a queued job; true when it was queued.
    pub fn cancel(&self, id: i64) -> Result<bool, DbError> {
        match self {
            State::Shared(pg) => pg.cancel(id),
            State::Local(db) => Ok(lock(db).cancel(id)?),
        }
    }

    /// Job `id`.
    pub fn get(&self, id: i64) -> Result<Option<Job>, DbError> {
        match self {
            State::Shared(pg) => pg.get(id),
            State::Local(db) => Ok(lock(db).get(id)?),
        }
    }

    /// The latest jobs, newest first (of one target when given).
    pub fn list(&self, target: Option<&str>, limit: i64) -> Result<Vec<Job>, DbError> {
        match self {
            State::Shared(pg) => pg.list(target, limit),
            State::Local(db) => Ok(lock(db).list(target, limit)?),
        }
    }

    /// The queued jobs, oldest first.
    pub fn queued(&self) -> Result<Vec<Job>, DbError> {
        match self {
            State::Shared(pg) => pg.queued(),
            State::Local(db) => Ok(lock(db).queued()?),
        }
    }

    /// Base `image` as last checked.
    pub fn base(&self, image: &str) -> Result<Option<BaseState>, DbError> {
        match self {
            State::Shared(pg) => pg.base(image),
            State::Local(db) => Ok(lock(db).base(image)?),
        }
    }

    /// Every base checked.
    pub fn bases(&self) -> Result<Vec<BaseState>, DbError> {
        match self {
            State::Shared(pg) => pg.bases(),
            State::Local(db) => Ok(lock(db).bases()?),
        }
    }

    /// Records a check of base `image`.
    pub fn record_base(&self, image: &str, seen: Result<&str, &str>) -> Result<(), DbError> {
        match self {
            State::Shared(pg) => pg.record_base(image, seen),
            State::Local(db) => Ok(lock(db).record_base(image, seen)?),
        }
    }

    /// Records fleet cache steps as used now (`bump`) or first seen.
    pub fn fleet_note(&self, steps: &[(String, i64)], bump: bool) -> Result<(), DbError> {
        match self {
            State::Shared(pg) => pg.fleet_note(steps, bump),
            State::Local(db) => Ok(lock(db).fleet_note(steps, bump)?),
        }
    }

    /// The fleet cache's steps as known, least recently used first.
    pub fn fleet_steps(&self) -> Result<Vec<(String, i64, String)>, DbError> {
        match self {
            State::Shared(pg) => pg.fleet_steps(),
            State::Local(db) => Ok(lock(db).fleet_steps()?),
        }
    }

    /// Forgets fleet cache steps.
    pub fn fleet_forget(&self, tags: &[String]) -> Result<(), DbError> {
        match self {
            State::Shared(pg) => pg.fleet_forget(tags),
            State::Local(db) => Ok(lock(db).fleet_forget(tags)?),
        }
    }

    /// True when the state can be read (readiness).
    pub fn ready(&self) -> Result<(), DbError> {
        match self {
            State::Shared(pg) => pg.ping(),
            State::Local(_) => self.queued().map(drop),
        }
    }
}
