//! The service's state in PostgreSQL (`[state] url`), shared by any number
//! of replicas: a job is claimed with `FOR UPDATE SKIP LOCKED` and held by
//! a lease its replica renews; a job whose lease ran out (its replica was
//! killed or cut off) is queued again by whichever replica sees it first.
//! At most one job per target is queued and one runs, across the fleet:
//! two partial unique indexes say so, so no replica's timing can break it.
//! Enqueues and finishes `NOTIFY kiln_jobs`, which wakes idle replicas.

use super::db::{BaseState, COLUMNS, DbError, Job};
use postgres::{NoTls, Row};
use r2d2_postgres::PostgresConnectionManager;
use std::time::Duration;

/// The schema this kiln writes; a database with a newer one is refused.
pub const SCHEMA: i32 = 2;

/// The channel enqueues and finishes notify.
const CHANNEL: &str = "kiln_jobs";

/// `pg_advisory_xact_lock`'s key for migrations ("kiln" in ASCII).
const MIGRATION_LOCK: i64 = 0x6b69_6c6e;

/// The migrations, the n-th making schema n + 1.
const MIGRATIONS: [&str; 2] = [
    "CREATE TABLE jobs (
        id BIGSERIAL PRIMARY KEY,
        target TEXT NOT NULL,
        triggers TEXT NOT NULL,
        status TEXT NOT NULL,
        queued_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        hits BIGINT NOT NULL DEFAULT 0,
        misses BIGINT NOT NULL DEFAULT 0,
        error TEXT,
        replica TEXT,
        lease_until TIMESTAMPTZ
    );
    CREATE INDEX jobs_target ON jobs (target, id);
    CREATE UNIQUE INDEX jobs_one_queued ON jobs (target) WHERE status = 'queued';
    CREATE UNIQUE INDEX jobs_one_running ON jobs (target) WHERE status = 'running';
    CREATE TABLE bases (
        image TEXT PRIMARY KEY,
        digest TEXT,
        checked_at TEXT,
        changed_at TEXT,
        error TEXT
    );",
    "CREATE TABLE fleet_steps (
        tag TEXT PRIMARY KEY,
        bytes BIGINT NOT NULL,
        used_at TEXT NOT NULL
    );",
];

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// The shared state: a pool of connections, and this replica's name.
pub struct Pg {
    pool: Pool,
    url: String,
    /// This replica, as the job table records it.
    pub replica: String,
    /// How long a claimed job stays this replica's without a renewal.
    pub lease: Duration,
}

/// Runs `f` where the synchronous client may block: on a thread of its own
/// when called from a tokio runtime (the client drives its own), else here.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => f(),
    }
}

fn job(row: &Row) -> Job {
    let triggers: String = row.get(2);
    Job {
        id: row.get(0),
        target: row.get(1),
        triggers: triggers
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        status: row.get(3),
        queued_at: row.get(4),
        started_at: row.get(5),
        finished_at: row.get(6),
        hits: row.get(7),
        misses: row.get(8),
        error: row.get(9),
    }
}

fn now() -> String {
    super::db::now()
}

impl Pg {
    /// Connects to `url` and brings its schema to [`SCHEMA`] (once, under
    /// a lock, whichever replica comes first); a newer schema is refused.
    pub fn connect(url: &str, replica: String, lease: Duration) -> Result<Pg, DbError> {
        off_runtime(|| {
            let config: postgres::Config = url.parse().map_err(DbError::Postgres)?;
            let manager = PostgresConnectionManager::new(config, NoTls);
            let pool = r2d2::Pool::builder()
                .max_size(8)
                .connection_timeout(Duration::from_secs(10))
                .build(manager)
                .map_err(|e| DbError::Pool(e.to_string()))?;
            let pg = Pg {
                pool,
                url: url.to_string(),
                replica,
                lease,
            };
            pg.migrate()?;
            Ok(pg)
        })
    }

    fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, DbError> {
        off_runtime(|| {
            let mut conn = self.pool.get().map_err(|e| DbError::Pool(e.to_string()))?;
            f(&mut conn).map_err(DbError::Postgres)
        })
    }

    fn migrate(&self) -> Result<(), DbError> {
        let found = self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS kiln_schema (version INTEGER NOT NULL)")?;
            let found: Option<i32> = tx
                .query_one("SELECT max(version) FROM kiln_schema", &[])?
                .get(0);
            let found = found.unwrap_or(0);
            if found <= SCHEMA {
                for (n, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
                    tx.batch_execute(sql)?;
                    tx.execute("INSERT INTO kiln_schema VALUES ($1)", &[&(n as i32 + 1)])?;
                }
            }
            tx.commit()?;
            Ok(found)
        })?;
        match found > SCHEMA {
            true => Err(DbError::NewerSchema {
                found,
                known: SCHEMA,
            }),
            false => Ok(()),
        }
    }

    /// True when the database answers (readiness).
    pub fn ping(&self) -> Result<(), DbError> {
        self.with(|c| c.batch_execute("SELECT 1"))
    }

    /// [`super::db::Db::enqueue`], across replicas: the queued job of a
    /// target is one row (a unique index), so triggers from any replica
    /// coalesce into it.
    pub fn enqueue(&self, target: &str, trigger: &str) -> Result<(Job, bool), DbError> {
        let (id, new) = self.with(|c| {
            let mut tx = c.transaction()?;
            let row = tx.query_one(
                "INSERT INTO jobs (target, triggers, status, queued_at) VALUES ($1, $2, 'queued', $3)
                 ON CONFLICT (target) WHERE status = 'queued' DO UPDATE SET triggers =
                   CASE WHEN (',' || jobs.triggers || ',') LIKE ('%,' || $2 || ',%')
                        THEN jobs.triggers ELSE jobs.triggers || ',' || $2 END
                 RETURNING id, (xmax = 0) AS inserted",
                &[&target, &trigger, &now()],
            )?;
            tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])?;
            tx.commit()?;
            Ok((row.get::<_, i64>(0), row.get::<_, bool>(1)))
        })?;
        let job = self.get(id)?.ok_or(DbError::Vanished(id))?;
        Ok((job, new))
    }

    /// Claims the oldest queued job whose target runs nowhere, leased to
    /// this replica; None when there is none (or another replica took the
    /// target at the same moment). `busy`: targets whose build still runs
    /// here though the database may say otherwise (a job taken back from
    /// this replica, whose build has not reached its next step yet).
    pub fn claim(&self, busy: &[String]) -> Result<Option<Job>, DbError> {
        let (replica, lease) = (self.replica.clone(), self.lease.as_secs_f64());
        let busy = busy.to_vec();
        self.with(move |c| {
            let claimed = c.query_opt(
                &format!(
                    "UPDATE jobs SET status = 'running', started_at = $1, replica = $2,
                       lease_until = now() + make_interval(secs => $3)
                     WHERE id = (
                       SELECT j.id FROM jobs j
                       WHERE j.status = 'queued' AND NOT (j.target = ANY($4)) AND NOT EXISTS
                         (SELECT 1 FROM jobs r WHERE r.target = j.target AND r.status = 'running')
                       ORDER BY j.id FOR UPDATE SKIP LOCKED LIMIT 1)
                     RETURNING {COLUMNS}"
                ),
                &[&now(), &replica, &lease, &busy],
            );
            match claimed {
                Ok(row) => Ok(row.as_ref().map(job)),
                // Another replica started the target between the check and
                // the update: the index refused this one.
                Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        })
    }

    /// Renews this replica's leases on `ids`; the ids it still holds.
    pub fn renew(&self, ids: &[i64]) -> Result<Vec<i64>, DbError> {
        let (replica, lease, ids) = (self.replica.clone(), self.lease.as_secs_f64(), ids.to_vec());
        self.with(move |c| {
            c.query(
                "UPDATE jobs SET lease_until = now() + make_interval(secs => $2)
                 WHERE replica = $1 AND status = 'running' AND id = ANY($3) RETURNING id",
                &[&replica, &lease, &ids],
            )
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// Jobs whose lease ran out: queued again (a running job starts over),
    /// or, when its target has a job queued already, its triggers moved
    /// there and it is marked `lost`. How many were taken back.
    pub fn reap(&self) -> Result<usize, DbError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let lost = tx.query(
                "SELECT id, target, triggers, replica FROM jobs
                 WHERE status = 'running' AND lease_until < now()
                 FOR UPDATE SKIP LOCKED",
                &[],
            )?;
            for row in &lost {
                let (id, target, triggers, replica): (i64, String, String, Option<String>) =
                    (row.get(0), row.get(1), row.get(2), row.get(3));
                let queued = tx.query_opt(
                    "SELECT id, triggers FROM jobs WHERE target = $1 AND status = 'queued' FOR UPDATE",
                    &[&target],
                )?;
                match queued {
                    Some(q) => {
                        let (qid, mut merged): (i64, String) = (q.get(0), q.get(1));
                        for t in triggers.split(',').filter(|t| !t.is_empty()) {
                            if !merged.split(',').any(|m| m == t) {
                                merged = format!("{merged},{t}");
                            }
                        }
                        tx.execute(
                            "UPDATE jobs SET triggers = $1 WHERE id = $2",
                            &[&merged, &qid],
                        )?;
                        let why = format!(
                            "replica {} lost its lease; its triggers went to job {qid}",
                            replica.unwrap_or_default()
                        );
                        tx.execute(
                            "UPDATE jobs SET status = 'lost', finished_at = $1, error = $2,
                               lease_until = NULL WHERE id = $3",
                            &[&now(), &why, &id],
                        )?;
                    }
                    None => {
                        tx.execute(
                            "UPDATE jobs SET status = 'queued', started_at = NULL, replica = NULL,
                               lease_until = NULL WHERE id = $1",
                            &[&id],
                        )?;
                    }
                }
            }
            if !lost.is_empty() {
                tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])?;
            }
            tx.commit()?;
            Ok(lost.len())
        })
    }

    /// Records how job `id` ended, if this replica still holds it; true
    /// when it did (a job taken back after a lost lease is not
    /// overwritten).
    pub fn finish(
        &self,
        id: i64,
        status: &str,
        (hits, misses): (i64, i64),
        error: Option<&str>,
    ) -> Result<bool, DbError> {
        let replica = self.replica.clone();
        let (status, error) = (status.to_string(), error.map(str::to_string));
        self.with(move |c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE jobs SET status = $1, finished_at = $2, hits = $3, misses = $4, error = $5,
                   lease_until = NULL
                 WHERE id = $6 AND replica = $7 AND status = 'running'",
                &[&status, &now(), &hits, &misses, &error, &id, &replica],
            )?;
            tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])?;
            tx.commit()?;
            Ok(n == 1)
        })
    }

    /// Cancels job `id` if it is still queued; true when it was.
    pub fn cancel(&self, id: i64) -> Result<bool, DbError> {
        self.with(move |c| {
            c.execute(
                "UPDATE jobs SET status = 'canceled', finished_at = $1 WHERE id = $2 AND status = 'queued'",
                &[&now(), &id],
            )
            .map(|n| n == 1)
        })
    }

    /// The queued jobs, oldest first.
    pub fn queued(&self) -> Result<Vec<Job>, DbError> {
        self.query("WHERE status = 'queued' ORDER BY id", Vec::new())
    }

    /// Job `id`.
    pub fn get(&self, id: i64) -> Result<Option<Job>, DbError> {
        Ok(self.query("WHERE id = $1", vec![Arg::Int(id)])?.pop())
    }

    /// The latest `limit` jobs, newest first (of one target when given).
    pub fn list(&self, target: Option<&str>, limit: i64) -> Result<Vec<Job>, DbError> {
        match target {
            Some(t) => self.query(
                "WHERE target = $1 ORDER BY id DESC LIMIT $2",
                vec![Arg::Text(t.to_string()), Arg::Int(limit)],
            ),
            None => self.query("ORDER BY id DESC LIMIT $1", vec![Arg::Int(limit)]),
        }
    }

    /// What was last seen of base `image`.
    pub fn base(&self, image: &str) -> Result<Option<BaseState>, DbError> {
        let image = image.to_string();
        self.with(move |c| {
            c.query_opt(
                "SELECT image, digest, checked_at, changed_at, error FROM bases WHERE image = $1",
                &[&image],
            )
            .map(|r| r.as_ref().map(base))
        })
    }

    /// Every base seen.
    pub fn bases(&self) -> Result<Vec<BaseState>, DbError> {
        self.with(|c| {
            c.query(
                "SELECT image, digest, checked_at, changed_at, error FROM bases ORDER BY image",
                &[],
            )
            .map(|rows| rows.iter().map(base).collect())
        })
    }

    /// [`super::db::Db::record_base`].
    pub fn record_base(&self, image: &str, seen: Result<&str, &str>) -> Result<(), DbError> {
        let (image, now) = (image.to_string(), now());
        let seen = seen.map(str::to_string).map_err(str::to_string);
        self.with(move |c| {
            match seen {
                Ok(digest) => c.execute(
                    "INSERT INTO bases (image, digest, checked_at, changed_at, error)
                     VALUES ($1, $2, $3, $3, NULL)
                     ON CONFLICT (image) DO UPDATE SET
                       changed_at = CASE WHEN bases.digest IS NOT DISTINCT FROM $2
                                    THEN bases.changed_at ELSE $3 END,
                       digest = $2, checked_at = $3, error = NULL",
                    &[&image, &digest, &now],
                )?,
                Err(e) => c.execute(
                    "INSERT INTO bases (image, checked_at, error) VALUES ($1, $2, $3)
                     ON CONFLICT (image) DO UPDATE SET checked_at = $2, error = $3",
                    &[&image, &now, &e],
                )?,
            };
            Ok(())
        })
    }

    /// The running jobs' leases: job, target, replica, until when.
    pub fn leases(&self) -> Result<Vec<(i64, String, String, String)>, DbError> {
        self.with(|c| {
            c.query(
                "SELECT id, target, coalesce(replica, ''), coalesce(lease_until::text, '')
                 FROM jobs WHERE status = 'running' ORDER BY replica, id",
                &[],
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                    .collect()
            })
        })
    }

    /// [`super::db::Db::fleet_note`].
    pub fn fleet_note(&self, steps: &[(String, i64)], bump: bool) -> Result<(), DbError> {
        let (steps, now) = (steps.to_vec(), now());
        let sql = match bump {
            true => "INSERT INTO fleet_steps (tag, bytes, used_at) VALUES ($1, $2, $3)
                     ON CONFLICT (tag) DO UPDATE SET bytes = excluded.bytes, used_at = excluded.used_at",
            false => "INSERT INTO fleet_steps (tag, bytes, used_at) VALUES ($1, $2, $3)
                      ON CONFLICT (tag) DO NOTHING",
        };
        self.with(move |c| {
            for (tag, bytes) in &steps {
                c.execute(sql, &[tag, bytes, &now])?;
            }
            Ok(())
        })
    }

    /// [`super::db::Db::fleet_steps`].
    pub fn fleet_steps(&self) -> Result<Vec<(String, i64, String)>, DbError> {
        self.with(|c| {
            c.query(
                "SELECT tag, bytes, used_at FROM fleet_steps ORDER BY used_at, tag",
                &[],
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect()
            })
        })
    }

    /// [`super::db::Db::fleet_forget`].
    pub fn fleet_forget(&self, tags: &[String]) -> Result<(), DbError> {
        let tags = tags.to_vec();
        self.with(move |c| {
            c.execute("DELETE FROM fleet_steps WHERE tag = ANY($1)", &[&tags])
                .map(drop)
        })
    }

    fn query(&self, tail: &str, args: Vec<Arg>) -> Result<Vec<Job>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM jobs {tail}");
        self.with(move |c| {
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args
                .iter()
                .map(|a| match a {
                    Arg::Int(i) => i as &(dyn postgres::types::ToSql + Sync),
                    Arg::Text(t) => t as &(dyn postgres::types::ToSql + Sync),
                })
                .collect();
            c.query(&sql, &params)
                .map(|rows| rows.iter().map(job).collect())
        })
    }

    /// Calls `wake` whenever a job is queued or ends anywhere in the
    /// fleet, from a thread of its own with a connection of its own
    /// (`LISTEN`); reconnects when the connection drops. Replicas also
    /// poll, so a missed notification only delays.
    pub fn listen(&self, wake: impl Fn() + Send + 'static) {
        let url = self.url.clone();
        std::thread::spawn(move || {
            loop {
                if let Ok(mut c) = postgres::Client::connect(&url, NoTls)
                    && c.batch_execute(&format!("LISTEN {CHANNEL}")).is_ok()
                {
                    loop {
                        use postgres::fallible_iterator::FallibleIterator;
                        let got = c
                            .notifications()
                            .timeout_iter(Duration::from_secs(5))
                            .next()
                            .map(|n| n.is_some());
                        match got {
                            Ok(true) => wake(),
                            Err(_) => break,
                            Ok(false) if c.is_closed() => break,
                            Ok(false) => {}
                        }
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    }
}

/// A query argument (the job queries take an id, a name or a limit).
enum Arg {
    Int(i64),
    Text(String),
}

fn base(row: &Row) -> BaseState {
    BaseState {
        image: row.get(0),
        digest: row.get(1),
        checked_at: row.get(2),
        changed_at: row.get(3),
        error: row.get(4),
    }
}
