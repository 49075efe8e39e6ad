//! Throttled sign-in, as django-axes and Rails 8's `rate_limit` do it, but shared by every
//! instance: failures are counted in the database (see [`crate::db::login_failures`]).
//!
//! - `user:<name>`: failed sign-ins for one username (any case), at most
//!   `LOGIN_FAILURE_LIMIT` (5) per `LOGIN_FAILURE_WINDOW_SECS` (15 minutes). Against guessing
//!   one member's password from many addresses.
//! - `addr:<ip>`: failed sign-ins from one client address, at most
//!   `LOGIN_ADDRESS_FAILURE_LIMIT` (50) per window. Against spraying a few passwords over
//!   every public username.
//! - `signup:<ip>`: sign-up attempts from one address, at most `SIGNUP_ADDRESS_LIMIT` (10)
//!   per window: each one costs a hash and may create an account.
//!
//! Every attempt is counted before its password is hashed (an attempt is a failure until it
//! succeeds), so a burst of concurrent guesses cannot all pass a check made before any of them
//! is counted. An attempt over a limit is refused before any hashing, with the time the window
//! ends. A success clears its username's count and takes its own attempt back from the
//! address's. Every failure and lock-out is logged, never the password.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::SecurityConfig;
use crate::db::{Database, DbError, now};

/// A refusal: the bucket is over its limit until `retry_after` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub retry_after: Duration,
}

/// The limits, and the database that counts; cheap to clone.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    db: Database,
    user_limit: i64,
    address_limit: i64,
    signup_limit: i64,
    window: i64,
}

fn user_bucket(username: &str) -> String {
    format!("user:{}", username.to_lowercase())
}

fn address_bucket(address: IpAddr) -> String {
    format!("addr:{address}")
}

fn signup_bucket(address: IpAddr) -> String {
    format!("signup:{address}")
}

impl LoginThrottle {
    pub fn new(db: Database, config: &SecurityConfig) -> Self {
        Self {
            db,
            user_limit: i64::from(config.login_failure_limit),
            address_limit: i64::from(config.login_address_failure_limit),
            signup_limit: i64::from(config.signup_address_limit),
            window: config.login_failure_window.as_secs() as i64,
        }
    }

    fn limit_of(&self, bucket: &str) -> i64 {
        if bucket.starts_with("user:") {
            self.user_limit
        } else if bucket.starts_with("signup:") {
            self.signup_limit
        } else {
            self.address_limit
        }
    }

    /// Counts one attempt in each of `buckets` in turn (one upsert each) before anything is
    /// hashed, so that concurrent attempts cannot all slip in under the limit; returns the
    /// counts and, when a bucket is over its limit, the lock-out. The buckets after a locked
    /// one are not counted: a locked address writes no row for each username it tries.
    async fn count_attempt(&self, buckets: &[&str]) -> Result<(Vec<i64>, Option<Locked>), DbError> {
        let now = now();
        let mut counts = Vec::with_capacity(buckets.len());
        let mut opens_at = None;
        for bucket in buckets {
            let count = self
                .db
                .count_failure(bucket, now, now - self.window)
                .await?;
            counts.push(count.failures);
            if count.failures > self.limit_of(bucket) {
                opens_at = Some(count.window_started_at + self.window);
                break;
            }
        }
        let locked = opens_at.map(|at| Locked {
            retry_after: Duration::from_secs((at - now).max(1) as u64),
        });
        Ok((counts, locked))
    }

    /// Counts a sign-in attempt as `username` from `address`, before its password is checked:
    /// it is a failure until [`LoginThrottle::succeeded`] says otherwise. Refused (`Some`)
    /// when the username or the address is over its limit; then nothing may be hashed.
    pub async fn attempt_login(
        &self,
        username: &str,
        address: Option<IpAddr>,
    ) -> Result<Option<Locked>, DbError> {
        let address_key = address.map(address_bucket);
        // No member's name is longer (see `validate_username`): such a name gets no row of
        // its own, only its address's count.
        let user = (username.chars().count() <= 150).then(|| user_bucket(username));
        let mut buckets: Vec<&str> = address_key.as_deref().into_iter().collect();
        buckets.extend(user.as_deref());
        let (counts, locked) = self.count_attempt(&buckets).await?;
        if let Some(locked) = locked {
            // Debug only: an attacker decides how many of these there are; the lock-out
            // itself was logged when it began.
            tracing::debug!(
                user.name = %username,
                client.addr = address.map(tracing::field::display),
                retry_after_secs = locked.retry_after.as_secs(),
                "sign-in refused: locked out"
            );
            return Ok(Some(locked));
        }
        for (bucket, count) in buckets.iter().zip(counts) {
            if count == self.limit_of(bucket) {
                tracing::warn!(
                    event = "login.lockout",
                    user.name = %username,
                    client.addr = address.map(tracing::field::display),
                    bucket = bucket.split(':').next().unwrap_or(""),
                    window_secs = self.window,
                    "too many sign-in attempts: this one is the last of the window"
                );
            }
        }
        Ok(None)
    }

    /// The attempt failed (a wrong password); it stays counted.
    pub fn failed(&self, username: &str, address: Option<IpAddr>) {
        tracing::warn!(
            event = "login.failure",
            user.name = %username,
            client.addr = address.map(tracing::field::display),
            "failed sign-in"
        );
    }

    /// The attempt succeeded: the username's count is cleared, and the address's attempt is
    /// taken back (one good password does not excuse the bad ones before it).
    pub async fn succeeded(&self, username: &str, address: Option<IpAddr>) -> Result<(), DbError> {
        self.db.clear_failures(&user_bucket(username)).await?;
        if let Some(address) = address {
            self.db.uncount_failure(&address_bucket(address)).await?;
        }
        Ok(())
    }

    /// Counts a sign-up attempt from `address`; refused (`Some`) when the address is over
    /// its limit.
    pub async fn attempt_signup(&self, address: Option<IpAddr>) -> Result<Option<Locked>, DbError> {
        let Some(address) = address else {
            return Ok(None);
        };
        let bucket = signup_bucket(address);
        let (_, locked) = self.count_attempt(&[&bucket]).await?;
        if let Some(locked) = locked {
            tracing::warn!(
                event = "signup.locked",
                client.addr = %address,
                retry_after_secs = locked.retry_after.as_secs(),
                "sign-up refused: too many attempts from this address"
            );
        }
        Ok(locked)
    }

    /// Deletes the counters whose window is over; returns how many.
    pub async fn sweep(&self) -> Result<u64, DbError> {
        self.db.sweep_failures(now() - self.window).await
    }
}
