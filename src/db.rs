//! The database: PostgreSQL in production, SQLite as the embedded default.
//!
//! One [`sqlx::AnyPool`] and one set of portable queries serve both; the backend is picked from
//! the `DATABASE_URL` scheme. Because the `Any` driver maps only a few types the same way on
//! both, ids, times (unix seconds) and flags (0/1) are all `BIGINT`.

pub mod cache;
pub mod deletions;
pub mod direct_uploads;
pub mod downloads;
pub mod invalidation;
pub mod login_failures;
pub mod marks;
pub mod prefetch;
pub mod profiles;
pub mod session_loads;
pub mod sessions;
pub mod share_links;
pub mod staging;
pub mod users;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

use secrecy::{ExposeSecret, SecretString};
use tower_sessions::session::{Id, Record};

use crate::config::DatabaseConfig;
use crate::db::cache::{CacheGate, TtlCache};

pub use invalidation::Invalidation;
pub use login_failures::FailureCount;
pub use profiles::{ProfileRow, ResumeRef};
pub use sessions::SqlSessionStore;
pub use staging::{MediaRef, ScrubReport};
pub use users::UserRow;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// What went wrong, by kind: the web layer answers an outage with a 503, a missing row with a
/// 404, a taken name with a 409, and anything else (a bug) with a 500.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database is not reachable or cannot take the work now: a pool timeout, I/O, TLS,
    /// a lock held too long, the server shutting down or out of connections.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// The database or the driver refused the query: a decode error, a missing column, a
    /// constraint no use case names. Not an outage: a bug.
    #[error("database query failed: {0}")]
    Failed(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} is already taken")]
    Conflict(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error(
        "the database did not answer within {} s (DATABASE_CONNECT_TIMEOUT_SECS): {source}",
        waited.as_secs()
    )]
    NotAnswering {
        waited: Duration,
        #[source]
        source: sqlx::Error,
    },
}

impl From<sqlx::Error> for DbError {
    fn from(err: sqlx::Error) -> Self {
        if is_outage(&err) {
            DbError::Unavailable(err)
        } else if matches!(err, sqlx::Error::RowNotFound) {
            DbError::NotFound("no such row".into())
        } else {
            DbError::Failed(err)
        }
    }
}

/// Whether `err` says the database is out of reach or overloaded, rather than that the query
/// is wrong.
fn is_outage(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // PostgreSQL's SQLSTATEs are five characters; SQLite's codes are numbers below
            // 10,000 (the primary code in the low byte).
            if code.len() == 5 {
                // Connection exceptions, insufficient resources, operator intervention
                // (shutting down), serialization failures and deadlocks.
                ["08", "53", "57"]
                    .iter()
                    .any(|class| code.starts_with(class))
                    || matches!(code.as_ref(), "40001" | "40P01")
            } else {
                // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
                code.parse::<u32>()
                    .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13 | 14))
            }
        }),
        _ => false,
    }
}

/// A handle on the database; cheap to clone: one reference count. It is cloned into every
/// request's state and extractors, so its parts (a pool, three caches, a URL) sit behind one
/// `Arc` rather than being cloned one by one (that was a tenth of `/resume/{id}`'s CPU).
#[derive(Debug, Clone)]
pub struct Database(Arc<DatabaseParts>);

impl std::ops::Deref for Database {
    type Target = DatabaseParts;

    fn deref(&self) -> &DatabaseParts {
        &self.0
    }
}

/// What a [`Database`] holds.
#[derive(Debug, Clone)]
pub struct DatabaseParts {
    pool: AnyPool,
    backend: Backend,
    /// `find_resume` answers, absent ones included; dropped by this process's own writes.
    resumes: TtlCache<i64, Option<ResumeRef>>,
    /// `find_user` answers, for the session check on every signed-in request.
    users: TtlCache<i64, UserRow>,
    /// Session records, for the session store.
    sessions: TtlCache<Id, Record>,
    /// Session look-ups on their way to the database, batched (see [`session_loads`]).
    session_loads: Arc<session_loads::SessionLoads>,
    /// Shut while cross-process invalidation is down (see [`invalidation`]).
    gate: CacheGate,
    /// The URL connected to, for the invalidation listener's own connection.
    url: SecretString,
    /// The longest a statement may run, and a client-side wait for one may last.
    deadline: Duration,
}

impl Database {
    /// Connects to `url`, each statement bounded by [`STATEMENT_TIMEOUT`]. For SQLite the file
    /// and its directory are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        Self::connect_with_deadline(url, max_connections, STATEMENT_TIMEOUT).await
    }

    /// Connects to `url`; on PostgreSQL every statement of the pool's connections ends after
    /// `deadline` (`statement_timeout`), the batched session look-ups and the download log's
    /// writer also stop waiting for an answer then, and the server probes its end of each
    /// connection with TCP keepalives, so that a client gone silent (a NAT drop, a failover)
    /// does not hold its locks for hours.
    pub async fn connect_with_deadline(
        url: &str,
        max_connections: u32,
        deadline: Duration,
    ) -> Result<Self, DbError> {
        let (backend, url) = resolve(url)?;
        let session_settings = postgres_session_settings(deadline);
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            // A request waits this long for a connection, then answers 503: during an outage
            // pages fail fast instead of piling up.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // sqlx pings every connection it hands out, which doubles the round trips of a
            // one-statement request. As Rails does, only a connection that sat idle is
            // checked; one the server dropped is then replaced before a request gets it.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= VERIFY_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _meta| {
                let session_settings = session_settings.clone();
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; the busy timeout makes
                        // concurrent writers wait instead of failing.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                        )
                        .await?;
                    } else {
                        conn.execute(session_settings.as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Self(Arc::new(DatabaseParts {
            session_loads: Arc::new(session_loads::SessionLoads::new(
                pool.clone(),
                backend,
                deadline,
            )),
            deadline,
            pool,
            backend,
            resumes: TtlCache::disabled(),
            users: TtlCache::disabled(),
            sessions: TtlCache::disabled(),
            gate: CacheGate::default(),
            url: SecretString::from(url),
        })))
    }

    /// Connects as [`Database::connect`] does once the server answers. While it does not
    /// (refused, no answer, starting up, out of connections) single connection attempts are
    /// retried with backoff for up to `config.connect_timeout`, each failure logged: a platform
    /// may start the app before its database is back. Anything else (a wrong password, a
    /// missing database) fails at once.
    pub async fn open(config: &DatabaseConfig) -> Result<Self, DbError> {
        let (_, url) = resolve(&config.url)?;
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        for attempt in 1.. {
            let remaining = config.connect_timeout.saturating_sub(started.elapsed());
            let limit = remaining.clamp(Duration::from_millis(500), Duration::from_secs(5));
            let err = match tokio::time::timeout(limit, AnyConnection::connect(&url)).await {
                Ok(Ok(probe)) => {
                    let _ = probe.close().await;
                    return Self::connect_with_deadline(
                        &config.url,
                        config.pool_size,
                        config.statement_timeout,
                    )
                    .await;
                }
                Ok(Err(err)) if is_transient(&err) => err,
                Ok(Err(err)) => return Err(DbError::Unavailable(err)),
                Err(_) => sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} ms", limit.as_millis()),
                )),
            };
            let waited = started.elapsed();
            if waited + delay >= config.connect_timeout {
                return Err(DbError::NotAnswering {
                    waited: config.connect_timeout,
                    source: err,
                });
            }
            tracing::warn!(
                attempt,
                error = %err,
                retry_in_ms = delay.as_millis() as u64,
                "the database (DATABASE_URL) is not answering yet"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        unreachable!("the loop above returns")
    }

    /// Serves the hot path's look-ups (users by id, resumes by profile) from memory for up
    /// to `ttl` (see [`crate::db::cache`]).
    pub fn with_cache_ttl(self, ttl: Duration) -> Self {
        let gate = &self.gate;
        Self(Arc::new(DatabaseParts {
            resumes: TtlCache::gated(ttl, 100_000, gate.clone()),
            users: TtlCache::gated(ttl, 100_000, gate.clone()),
            sessions: TtlCache::gated(ttl, 100_000, gate.clone()),
            ..(*self.0).clone()
        }))
    }

    /// Drops every cached look-up, after a write that touched many rows.
    pub fn forget_cached(&self) {
        self.resumes.invalidate_all();
        self.users.invalidate_all();
        self.sessions.invalidate_all();
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies the migrations of this database's backend, then what SQL cannot do portably
    /// (the username keys of non-ASCII names). On PostgreSQL they run on a connection of
    /// their own, without the pool's statement deadline: building an index on a large table
    /// may take minutes, and `migrate` is a release step, not a request.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self.backend {
            Backend::Postgres => {
                let mut conn = AnyConnection::connect(self.url.expose_secret()).await?;
                let applied = POSTGRES_MIGRATIONS.run(&mut conn).await;
                let _ = conn.close().await;
                applied?;
            }
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
        }
        self.rekey_usernames().await?;
        Ok(())
    }

    /// The longest a statement may run ([`Database::connect_with_deadline`]).
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// How many of this backend's migrations the database has not applied (all of them on an
    /// empty database).
    pub async fn pending_migrations(&self) -> Result<usize, DbError> {
        let migrator = match self.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        let applied: Vec<i64> =
            match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
            {
                Ok(applied) => applied,
                // No migrations table: nothing was ever applied.
                Err(sqlx::Error::Database(_)) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
        Ok(migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .count())
    }

    /// A round trip to the database, within `limit`. A connection that does not answer in
    /// time is closed rather than given back to the pool, which would ping it again, for as
    /// long as it stays silent, before anyone else could have its place.
    pub async fn ping(&self, limit: Duration) -> Result<(), DbError> {
        let started = Instant::now();
        let mut conn = tokio::time::timeout(limit, self.pool.acquire())
            .await
            .map_err(|_| timed_out(limit))??;
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, sqlx::query("SELECT 1").execute(&mut *conn)).await {
            Ok(done) => {
                done?;
                Ok(())
            }
            Err(_) => {
                drop(conn.detach());
                Err(DbError::Unavailable(timed_out(limit)))
            }
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether a failure to connect may pass: the server is down, starting or full.
fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // cannot_connect_now (starting up or shutting down), too_many_connections.
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("57P03" | "53300")),
        _ => false,
    }
}

/// How long a query waits for a pooled connection (or for the server to take a new one).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest a statement runs when no configuration says otherwise.
pub const STATEMENT_TIMEOUT: Duration = crate::config::database::DEFAULT_STATEMENT_TIMEOUT;

/// What each PostgreSQL connection of the app sets first: its statement deadline, a limit on
/// an idle open transaction, and server-side TCP keepalives (probe after 60 s of silence,
/// every 10 s, 6 times). sqlx 0.8 cannot turn keepalives on for its own end of the socket;
/// the client-side deadlines of [`session_loads`] and the download log cover that end.
pub(crate) fn postgres_session_settings(deadline: Duration) -> String {
    let ms = deadline.as_millis().max(1);
    format!(
        "SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {}; \
         SET tcp_keepalives_idle = 60; SET tcp_keepalives_interval = 10; \
         SET tcp_keepalives_count = 6",
        ms * 2
    )
}

/// The error of a wait on the database that ran out: an outage (a 503), not a bug.
pub(crate) fn timed_out(limit: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "the database did not answer within {} ms",
            limit.as_millis()
        ),
    ))
}

/// A pooled connection idle this long is pinged before it is handed out.
const VERIFY_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The backend `url` names, and the URL to connect with.
fn resolve(url: &str) -> Result<(Backend, String), DbError> {
    sqlx::any::install_default_drivers();
    if url.starts_with("sqlite:") {
        Ok((Backend::Sqlite, sqlite_url(url)?))
    } else {
        Ok((Backend::Postgres, url.to_owned()))
    }
}

/// `sqlite://path` with the file (and its directory) created when missing.
fn sqlite_url(url: &str) -> Result<String, DbError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| path != ":memory:" && !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| DbError::Unavailable(sqlx::Error::Io(e)))?;
    }
    if query.split('&').any(|kv| kv.starts_with("mode=")) {
        Ok(url.to_owned())
    } else if query.is_empty() {
        Ok(format!("sqlite://{path}?mode=rwc"))
    } else {
        Ok(format!("sqlite://{path}?{query}&mode=rwc"))
    }
}

/// Now, in unix seconds, as stored.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Maps a unique violation to [`DbError::Conflict`] naming what is taken.
fn conflict(err: sqlx::Error, what: &'static str) -> DbError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => DbError::Conflict(what),
        _ => err.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_told_apart_by_kind() {
        assert!(matches!(
            DbError::from(sqlx::Error::PoolTimedOut),
            DbError::Unavailable(_)
        ));
        assert!(matches!(
            DbError::from(sqlx::Error::Io(std::io::Error::other("reset"))),
            DbError::Unavailable(_)
        ));
        assert!(matches!(
            DbError::from(sqlx::Error::RowNotFound),
            DbError::NotFound(_)
        ));
        assert!(matches!(
            DbError::from(sqlx::Error::ColumnNotFound("avatar_key".into())),
            DbError::Failed(_)
        ));
    }

    #[tokio::test]
    async fn a_locked_sqlite_database_is_an_outage_and_a_bad_query_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let db = Database::connect(&url, 2).await.unwrap();
        let bad = sqlx::query("SELECT no_such_column FROM sqlite_master")
            .execute(db.pool())
            .await
            .unwrap_err();
        assert!(matches!(DbError::from(bad), DbError::Failed(_)));
        // A second connection holding a write lock: the first times out as SQLITE_BUSY.
        let mut holder = db.pool().acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *holder)
            .await
            .unwrap();
        let mut other = db.pool().acquire().await.unwrap();
        sqlx::query("PRAGMA busy_timeout = 10")
            .execute(&mut *other)
            .await
            .unwrap();
        let busy = sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *other)
            .await
            .unwrap_err();
        assert!(
            matches!(DbError::from(busy), DbError::Unavailable(_)),
            "SQLITE_BUSY"
        );
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/db.sqlite");
        let url = sqlite_url(&format!("sqlite://{}", path.display())).unwrap();
        assert!(url.ends_with("db.sqlite?mode=rwc"));
        assert!(dir.path().join("sub").is_dir());
        assert_eq!(
            sqlite_url("sqlite://x.db?mode=ro").unwrap(),
            "sqlite://x.db?mode=ro"
        );
    }
}
