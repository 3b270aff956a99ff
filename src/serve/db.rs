//! The service's state across restarts: jobs, their triggers, results and
//! step counts, in SQLite in the store (`serve/state.db`). Every write is
//! one statement or one transaction: a kill -9 leaves the last committed
//! state.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::Path;

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Job {
    /// Its number.
    pub id: i64,
    /// The target it warms.
    pub target: String,
    /// What asked for it (`api`, `cron`, `push`, `base`), coalesced.
    pub triggers: Vec<String>,
    /// `queued`, `running`, `warm` (nothing to build), `built`, `failed`
    /// or `canceled`.
    pub status: String,
    /// When it was queued, started and finished (RFC 3339).
    pub queued_at: String,
    /// When it started.
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
    /// Steps that came from the cache.
    pub hits: i64,
    /// Steps that ran.
    pub misses: i64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A tracked base as last checked.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BaseState {
    /// The image reference.
    pub image: String,
    /// Its digest at the last successful check.
    pub digest: Option<String>,
    /// When it was last checked.
    pub checked_at: Option<String>,
    /// When its digest last changed (or was first seen).
    pub changed_at: Option<String>,
    /// Why the last check failed.
    pub error: Option<String>,
}

fn base(row: &rusqlite::Row) -> rusqlite::Result<BaseState> {
    Ok(BaseState {
        image: row.get(0)?,
        digest: row.get(1)?,
        checked_at: row.get(2)?,
        changed_at: row.get(3)?,
        error: row.get(4)?,
    })
}

/// Why the state cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error(transparent)]
    Postgres(postgres::Error),
    /// No connection to PostgreSQL could be had.
    #[error("connecting to the state database: {0}")]
    Pool(String),
    /// The database was migrated by a newer kiln.
    #[error(
        "the state database has schema {found}, newer than this kiln knows ({known}): run this replica's kiln at the fleet's version"
    )]
    NewerSchema {
        /// Its schema.
        found: i32,
        /// The newest this kiln writes.
        known: i32,
    },
    /// A job read back after a write is gone.
    #[error("job {0} vanished")]
    Vanished(i64),
    /// The database's directory could not be made.
    #[error("creating {path}: {source}")]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

type SqlResult<T> = Result<T, rusqlite::Error>;

/// The state database.
pub struct Db(Connection);

/// Now, as the job table records times (RFC 3339, milliseconds, UTC).
pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn job(row: &rusqlite::Row) -> rusqlite::Result<Job> {
    let triggers: String = row.get(2)?;
    Ok(Job {
        id: row.get(0)?,
        target: row.get(1)?,
        triggers: triggers
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        status: row.get(3)?,
        queued_at: row.get(4)?,
        started_at: row.get(5)?,
        finished_at: row.get(6)?,
        hits: row.get(7)?,
        misses: row.get(8)?,
        error: row.get(9)?,
    })
}

pub(super) const COLUMNS: &str =
    "id, target, triggers, status, queued_at, started_at, finished_at, hits, misses, error";

impl Db {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> SqlResult<Db> {
        let conn = Connection::open(path)?;
        // WAL: readers (the API) never wait for the writer (a job's end).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS jobs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                target TEXT NOT NULL,
                triggers TEXT NOT NULL,
                status TEXT NOT NULL,
                queued_at TEXT NOT NULL,
                started_at TEXT,
                finished_at TEXT,
                hits INTEGER NOT NULL DEFAULT 0,
                misses INTEGER NOT NULL DEFAULT 0,
                error TEXT
            );
            CREATE INDEX IF NOT EXISTS jobs_target ON jobs (target, id);
            CREATE TABLE IF NOT EXISTS fleet_steps (
                tag TEXT PRIMARY KEY,
                bytes INTEGER NOT NULL,
                used_at TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS bases (
                image TEXT PRIMARY KEY,
                digest TEXT,
                checked_at TEXT,
                changed_at TEXT,
                error TEXT
            );",
        )?;
        Ok(Db(conn))
    }

    /// Jobs a service that died left queued or running: queued again, in
    /// their order (a running job starts over).
    pub fn requeue_unfinished(&self) -> SqlResult<Vec<Job>> {
        self.0.execute(
            "UPDATE jobs SET status = 'queued', started_at = NULL WHERE status = 'running'",
            [],
        )?;
        self.query("WHERE status = 'queued' ORDER BY id", [])
    }

    /// Queues a job for `target`, or adds `trigger` to the one already
    /// queued for it (triggers coalesce); returns the job and whether it is new.
    pub fn enqueue(&mut self, target: &str, trigger: &str) -> SqlResult<(Job, bool)> {
        let tx = self.0.transaction()?;
        let queued: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, triggers FROM jobs WHERE target = ?1 AND status = 'queued'",
                params![target],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (id, new) = match queued {
            Some((id, triggers)) => {
                if !triggers.split(',').any(|t| t == trigger) {
                    tx.execute(
                        "UPDATE jobs SET triggers = ?1 WHERE id = ?2",
                        params![format!("{triggers},{trigger}"), id],
                    )?;
                }
                (id, false)
            }
            None => {
                tx.execute(
                    "INSERT INTO jobs (target, triggers, status, queued_at) VALUES (?1, ?2, 'queued', ?3)",
                    params![target, trigger, now()],
                )?;
                (tx.last_insert_rowid(), true)
            }
        };
        tx.commit()?;
        let job = self.get(id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        Ok((job, new))
    }

    /// Marks job `id` running, unless it was canceled; true when it is.
    pub fn start(&self, id: i64) -> SqlResult<bool> {
        let n = self.0.execute(
            "UPDATE jobs SET status = 'running', started_at = ?1 WHERE id = ?2 AND status = 'queued'",
            params![now(), id],
        )?;
        Ok(n == 1)
    }

    /// Records how job `id` ended.
    pub fn finish(
        &self,
        id: i64,
        status: &str,
        (hits, misses): (i64, i64),
        error: Option<&str>,
    ) -> SqlResult<()> {
        self.0.execute(
            "UPDATE jobs SET status = ?1, finished_at = ?2, hits = ?3, misses = ?4, error = ?5 WHERE id = ?6",
            params![status, now(), hits, misses, error, id],
        )?;
        Ok(())
    }

    /// Cancels job `id` if it is still queued; true when it was.
    pub fn cancel(&self, id: i64) -> SqlResult<bool> {
        let n = self.0.execute(
            "UPDATE jobs SET status = 'canceled', finished_at = ?1 WHERE id = ?2 AND status = 'queued'",
            params![now(), id],
        )?;
        Ok(n == 1)
    }

    /// The queued jobs, oldest first.
    pub fn queued(&self) -> SqlResult<Vec<Job>> {
        self.query("WHERE status = 'queued' ORDER BY id", [])
    }

    /// Job `id`.
    pub fn get(&self, id: i64) -> SqlResult<Option<Job>> {
        Ok(self.query("WHERE id = ?1", params![id])?.pop())
    }

    /// The latest `limit` jobs, newest first (of one target when given).
    pub fn list(&self, target: Option<&str>, limit: i64) -> SqlResult<Vec<Job>> {
        match target {
            Some(t) => self.query(
                "WHERE target = ?1 ORDER BY id DESC LIMIT ?2",
                params![t, limit],
            ),
            None => self.query("ORDER BY id DESC LIMIT ?1", params![limit]),
        }
    }

    /// What was last seen of base `image`.
    pub fn base(&self, image: &str) -> SqlResult<Option<BaseState>> {
        self.0
            .query_row(
                "SELECT image, digest, checked_at, changed_at, error FROM bases WHERE image = ?1",
                params![image],
                base,
            )
            .optional()
    }

    /// Every base seen.
    pub fn bases(&self) -> SqlResult<Vec<BaseState>> {
        let mut stmt = self.0.prepare(
            "SELECT image, digest, checked_at, changed_at, error FROM bases ORDER BY image",
        )?;
        let rows = stmt.query_map([], base)?;
        rows.collect()
    }

    /// Records a check of base `image`: its digest now (and when it
    /// changed), or why the check failed (keeping the digest last seen).
    pub fn record_base(&self, image: &str, seen: Result<&str, &str>) -> SqlResult<()> {
        let now = now();
        match seen {
            Ok(digest) => self.0.execute(
                "INSERT INTO bases (image, digest, checked_at, changed_at, error) VALUES (?1, ?2, ?3, ?3, NULL)
                 ON CONFLICT(image) DO UPDATE SET
                   changed_at = CASE WHEN digest IS ?2 THEN changed_at ELSE ?3 END,
                   digest = ?2, checked_at = ?3, error = NULL",
                params![image, digest, now],
            )?,
            Err(e) => self.0.execute(
                "INSERT INTO bases (image, checked_at, error) VALUES (?1, ?2, ?3)
                 ON CONFLICT(image) DO UPDATE SET checked_at = ?2, error = ?3",
                params![image, now, e],
            )?,
        };
        Ok(())
    }

    /// Records steps of the fleet's cache as used now (`bump`), or as
    /// first seen now when not known yet.
    pub fn fleet_note(&self, steps: &[(String, i64)], bump: bool) -> SqlResult<()> {
        let sql = match bump {
            true => "INSERT INTO fleet_steps (tag, bytes, used_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(tag) DO UPDATE SET bytes = excluded.bytes, used_at = excluded.used_at",
            false => "INSERT INTO fleet_steps (tag, bytes, used_at) VALUES (?1, ?2, ?3)
                      ON CONFLICT(tag) DO NOTHING",
        };
        let now = now();
        for (tag, bytes) in steps {
            self.0.execute(sql, params![tag, bytes, now])?;
        }
        Ok(())
    }

    /// The fleet cache's steps as known: tag, bytes, last used.
    pub fn fleet_steps(&self) -> SqlResult<Vec<(String, i64, String)>> {
        let mut stmt = self
            .0
            .prepare("SELECT tag, bytes, used_at FROM fleet_steps ORDER BY used_at, tag")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// Forgets steps the fleet's cache no longer has.
    pub fn fleet_forget(&self, tags: &[String]) -> SqlResult<()> {
        for t in tags {
            self.0
                .execute("DELETE FROM fleet_steps WHERE tag = ?1", params![t])?;
        }
        Ok(())
    }

    fn query(&self, tail: &str, args: impl rusqlite::Params) -> SqlResult<Vec<Job>> {
        let mut stmt = self
            .0
            .prepare(&format!("SELECT {COLUMNS} FROM jobs {tail}"))?;
        let rows = stmt.query_map(args, job)?;
        rows.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_coalesce_into_the_queued_job_and_unfinished_jobs_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut db = Db::open(&path).unwrap();
        let (a, new) = db.enqueue("app", "api").unwrap();
        assert!(new);
        let (b, new) = db.enqueue("app", "push").unwrap();
        assert!(!new);
        assert_eq!(a.id, b.id);
        assert_eq!(b.triggers, ["api", "push"]);
        assert!(db.start(a.id).unwrap());
        // Running: a new trigger queues a new job.
        let (c, new) = db.enqueue("app", "cron").unwrap();
        assert!(new && c.id != a.id);
        drop(db);
        // A restart: the running job is queued again, before the newer one.
        let db = Db::open(&path).unwrap();
        let again: Vec<i64> = db
            .requeue_unfinished()
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(again, [a.id, c.id]);
        assert!(db.cancel(c.id).unwrap());
        assert!(!db.start(c.id).unwrap(), "a canceled job does not start");
        db.finish(a.id, "built", (1, 2), None).unwrap();
        let j = db.get(a.id).unwrap().unwrap();
        assert_eq!((j.status.as_str(), j.hits, j.misses), ("built", 1, 2));
        assert_eq!(db.list(Some("app"), 10).unwrap().len(), 2);
    }

    #[test]
    fn a_base_remembers_its_digest_and_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("state.db")).unwrap();
        db.record_base("b:1", Ok("sha256:a")).unwrap();
        let first = db.base("b:1").unwrap().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        db.record_base("b:1", Ok("sha256:a")).unwrap();
        db.record_base("b:1", Err("unreachable")).unwrap();
        let same = db.base("b:1").unwrap().unwrap();
        assert_eq!(same.changed_at, first.changed_at, "unchanged digest");
        assert_eq!(same.digest.as_deref(), Some("sha256:a"));
        assert_eq!(same.error.as_deref(), Some("unreachable"));
        db.record_base("b:1", Ok("sha256:b")).unwrap();
        let changed = db.base("b:1").unwrap().unwrap();
        assert_ne!(changed.changed_at, first.changed_at);
        assert_eq!(changed.error, None);
        assert_eq!(db.bases().unwrap().len(), 1);
    }
}
