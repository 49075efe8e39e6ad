//! The session store behind tower-sessions, in the app's own database.
//!
//! Records are JSON in a `sessions` table with an expiry in unix seconds; expired rows are
//! never loaded and are swept by [`ExpiredDeletion`]. Loaded records are kept in the
//! database's short-lived session cache (see [`crate::db::cache`]): this process's saves and
//! deletes update it at once, and a delete reaches the other instances' caches too (see
//! [`super::invalidation`]). A save only ever updates a row: a session deleted while a request
//! of another instance was still using it (signed out there, or swept) is never written back.
//!
//! Each row also names its member (`user_id`, from axum-login's part of the record), so that
//! loading a session reads the member, and the resume a `/resume/{id}` request asks for, in
//! the same statement (see [`super::prefetch`]), which answers the other look-ups sent at the
//! same time too (see [`super::session_loads`]).

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

use super::{Database, Invalidation, now, prefetch};
use crate::db::cache::TtlCache;

/// Where axum-login keeps the signed-in member in the record (its default key, named here so
/// that the store can read the member's id).
pub const AUTH_DATA_KEY: &str = "axum-login.data";

/// The member a record is signed in as.
fn user_id_of(record: &Record) -> Option<i64> {
    record.data.get(AUTH_DATA_KEY)?.get("user_id")?.as_i64()
}

#[derive(Debug, Clone)]
pub struct SqlSessionStore {
    db: Database,
    cache: TtlCache<Id, Record>,
}

impl SqlSessionStore {
    pub fn new(db: Database) -> Self {
        let cache = db.sessions.clone();
        Self { db, cache }
    }
}

fn backend<E: std::fmt::Display>(err: E) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

impl SqlSessionStore {
    /// Runs a statement writing `record` (`$1` id, `$2` data, `$3` expiry, `$4` member);
    /// returns the rows it wrote.
    async fn write(&self, statement: &'static str, record: &Record) -> session_store::Result<u64> {
        let data =
            serde_json::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let done = sqlx::query(statement)
            .bind(record.id.to_string())
            .bind(data)
            .bind(record.expiry_date.unix_timestamp())
            .bind(user_id_of(record))
            .execute(self.db.pool())
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl SessionStore for SqlSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // Ids are 128 random bits; on the unlikely collision draw a new one.
        loop {
            let inserted = self
                .write(
                    "INSERT INTO sessions (id, data, expires_at, user_id) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                    record,
                )
                .await?;
            if inserted == 1 {
                self.cache.insert(record.id, record.clone());
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    /// Saves a session loaded earlier in the request. Only an update: an upsert would bring
    /// back a session deleted meanwhile (a sign-out on another instance while this request
    /// ran), so a session whose row is gone stays gone, and the member stays signed out.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let updated = self
            .write(
                "UPDATE sessions SET data = $2, expires_at = $3, user_id = $4 WHERE id = $1",
                record,
            )
            .await?;
        if updated == 1 {
            self.cache.insert(record.id, record.clone());
        } else {
            self.cache.invalidate(&record.id);
            tracing::debug!("a session deleted during the request was not saved again");
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        if let Some(record) = self.cache.get(id) {
            if record.expiry_date > OffsetDateTime::now_utc() {
                return Ok(Some(record));
            }
            self.cache.invalidate(id);
        }
        let wanted_resume = prefetch::wanted_resume();
        let loaded = self
            .db
            .session_loads
            .load(id.to_string(), wanted_resume)
            .await
            .map_err(session_store::Error::Backend)?;
        let Some(loaded) = loaded else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(&loaded.data)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let user = loaded.user;
        let resume = wanted_resume.map(|wanted| (wanted, loaded.resume));
        prefetch::put(user, resume);
        let record = Some(record);
        if let Some(record) = &record {
            self.cache.insert(*id, record.clone());
        }
        Ok(record)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.to_string())
            .execute(self.db.pool())
            .await
            .map_err(backend)?;
        self.db
            .publish(Invalidation::Session(*id))
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl ExpiredDeletion for SqlSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.db.delete_expired_sessions().await.map_err(backend)?;
        Ok(())
    }
}

impl Database {
    /// Deletes the sessions past their expiry (idle or absolute); returns how many.
    pub async fn delete_expired_sessions(&self) -> Result<u64, super::DbError> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// How many session rows there are (the hostile corpus counts them).
    pub async fn count_sessions(&self) -> Result<i64, super::DbError> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sessions")
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }
}
