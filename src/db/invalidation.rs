//! Cache invalidation across processes. A change that must end sessions at once (a sign-out,
//! a password change, "sign out everywhere") or that changes what `/resume/{id}` serves (a
//! replaced or deleted resume) drops the cached entries in this process and, on PostgreSQL, is
//! published with `NOTIFY` on [`CHANNEL`]; every instance listens and drops the same entries.
//! The session check then reads the database, sees the new password hash or epoch, and ends
//! the session; the resume look-up reads the new key.
//!
//! When the listening connection is lost, notifications may be missed, so the instance shuts
//! its [`CacheGate`] (every look-up then goes to the database, as with `CACHE_TTL_SECS=0`)
//! until it listens again; it then empties the caches and opens the gate. On SQLite there is
//! one process, and its own writes already update its caches.

use std::time::Duration;

use std::str::FromStr;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tower_sessions::session::Id;

use super::{Backend, Database, DbError};

/// The PostgreSQL channel stowage's instances listen on.
pub const CHANNEL: &str = "stowage_cache";

/// The listening connection's `application_name`, so it can be told from the pool's in
/// `pg_stat_activity`: it is one connection per instance, beside `DATABASE_POOL_SIZE`.
pub const LISTENER_NAME: &str = "stowage-listener";

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// A member's password, session epoch or flags.
    User(i64),
    /// A session was deleted (signed out).
    Session(Id),
    /// A profile's resume was replaced or removed.
    Resume(i64),
}

impl Invalidation {
    fn encode(&self) -> String {
        match self {
            Invalidation::User(id) => format!("user:{id}"),
            Invalidation::Session(id) => format!("session:{id}"),
            Invalidation::Resume(id) => format!("resume:{id}"),
        }
    }

    fn decode(payload: &str) -> Option<Self> {
        let (kind, value) = payload.split_once(':')?;
        match kind {
            "user" => value.parse().ok().map(Invalidation::User),
            "session" => value.parse().ok().map(Invalidation::Session),
            "resume" => value.parse().ok().map(Invalidation::Resume),
            _ => None,
        }
    }
}

impl Database {
    /// Drops what `change` makes stale here, then tells the other instances.
    pub async fn publish(&self, change: Invalidation) -> Result<(), DbError> {
        self.apply(&change);
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(change.encode())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    fn apply(&self, change: &Invalidation) {
        match change {
            Invalidation::User(id) => self.users.invalidate(id),
            Invalidation::Session(id) => self.sessions.invalidate(id),
            Invalidation::Resume(id) => self.resumes.invalidate(id),
        }
    }

    /// [`Database::publish`] after a change that has committed: a failure to tell the other
    /// instances cannot undo it, so it is logged (they see the change within `CACHE_TTL_SECS`).
    pub(super) async fn publish_committed(&self, change: Invalidation) {
        if let Err(e) = self.publish(change.clone()).await {
            tracing::warn!(error = %e, ?change, "could not tell the other instances of a change");
        }
    }

    /// On PostgreSQL, listens for other instances' changes for as long as the process runs
    /// (see the module docs); on SQLite, does nothing. Returns once the first listen is set
    /// up (or has failed, leaving the caches shut until a retry succeeds).
    pub async fn listen_for_invalidations(&self) {
        if self.backend != Backend::Postgres {
            return;
        }
        let (ready, started) = tokio::sync::oneshot::channel();
        let db = self.clone();
        tokio::spawn(async move { db.listen_loop(ready).await });
        let _ = tokio::time::timeout(Duration::from_secs(5), started).await;
    }

    async fn listen_loop(self, ready: tokio::sync::oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let mut delay = Duration::from_millis(200);
        loop {
            let listening = async {
                let options = PgConnectOptions::from_str(self.url.expose_secret())?
                    .application_name(LISTENER_NAME);
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?;
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            }
            .await;
            match listening {
                Ok(mut listener) => {
                    // Whatever was cached while nobody listened may be stale.
                    self.forget_cached();
                    self.gate.set_open(true);
                    delay = Duration::from_millis(200);
                    tracing::debug!(channel = CHANNEL, "listening for cache invalidations");
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    // Ok(None) is a lost connection; an error, a broken one.
                    while let Ok(Some(notification)) = listener.try_recv().await {
                        match Invalidation::decode(notification.payload()) {
                            Some(change) => self.apply(&change),
                            None => tracing::warn!(
                                payload = notification.payload(),
                                "unknown cache invalidation"
                            ),
                        }
                    }
                    self.gate.set_open(false);
                    tracing::warn!(
                        "lost the cache invalidation channel; caches are off until it is back"
                    );
                }
                Err(e) => {
                    self.gate.set_open(false);
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                        "could not listen for cache invalidations; caches are off meanwhile");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidations_round_trip_through_their_payload() {
        let id = Id::default();
        for change in [
            Invalidation::User(42),
            Invalidation::Session(id),
            Invalidation::Resume(7),
        ] {
            assert_eq!(Invalidation::decode(&change.encode()), Some(change));
        }
        assert_eq!(Invalidation::decode("user:x"), None);
        assert_eq!(Invalidation::decode("nonsense"), None);
    }
}
