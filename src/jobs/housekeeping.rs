//! What `serve` runs beside the server, on every instance: a sweep every five minutes, and the
//! retries of objects that deleted accounts left in storage. Each step is one statement or a
//! bounded batch, safe to run at once on several instances.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::db::{Database, now};
use crate::media;
use crate::storage::Storages;

/// How often [`sweep`] runs.
const SWEEP_EVERY: Duration = Duration::from_secs(300);

/// Every five minutes: ended sessions, counters of failed sign-ins whose window is over, log
/// entries older than `DOWNLOAD_LOG_DAYS`, and the objects of direct uploads nobody confirmed
/// in time.
pub async fn sweep(db: Database, storages: Storages, config: Arc<Config>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        every.tick().await;
        match db.delete_expired_sessions().await {
            Ok(n) if n > 0 => tracing::info!(sessions = n, "deleted ended sessions"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not delete ended sessions"),
        }
        let window = config.security.login_failure_window.as_secs() as i64;
        if let Err(e) = db.sweep_failures(now() - window).await {
            tracing::warn!(error = %e, "could not sweep sign-in failure counters");
        }
        let days = i64::from(config.download_log_days);
        if days > 0 {
            match db.delete_downloads_before(now() - days * 86_400).await {
                Ok(n) if n > 0 => tracing::info!(downloads = n, "deleted old download log entries"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not delete old download log entries"),
            }
        }
        let window = media::DIRECT_UPLOAD_CONFIRM_WINDOW.as_secs() as i64;
        media::sweep_abandoned_direct_uploads(&db, &storages, now() - window).await;
    }
}

/// How often [`retry_deletions`] looks for objects of deleted accounts left in storage.
const DELETION_RETRY_EVERY: Duration = Duration::from_secs(10);

/// Deletes the objects of deleted accounts that storage refused or did not answer for; each
/// object waits its own back-off (10 s doubling to 15 minutes), so a check every few seconds
/// is one indexed query while nothing is due.
pub async fn retry_deletions(db: Database, storages: Storages) {
    let mut every = tokio::time::interval(DELETION_RETRY_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        media::retry_pending_deletions(&db, &storages, now()).await;
    }
}
