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
//! A locked bucket is refused before any password is hashed, with the time it opens again. A
//! successful sign-in clears its username's count (not its address's: one good password does
//! not excuse fifty bad ones). Every failure and lock-out is logged, never the password.

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

    /// The lock-out of the first bucket that is at its limit, if any.
    async fn locked(&self, buckets: &[&str]) -> Result<Option<Locked>, DbError> {
        let now = now();
        let counts = self.db.failure_counts(buckets, now - self.window).await?;
        Ok(counts
            .iter()
            .filter(|(bucket, count)| count.failures >= self.limit_of(bucket))
            .map(|(_, count)| count.window_started_at + self.window - now)
            .max()
            .map(|secs| Locked {
                retry_after: Duration::from_secs(secs.max(1) as u64),
            }))
    }

    /// Whether a sign-in as `username` from `address` may be tried now.
    pub async fn check_login(
        &self,
        username: &str,
        address: Option<IpAddr>,
    ) -> Result<Option<Locked>, DbError> {
        let user = user_bucket(username);
        let address = address.map(address_bucket);
        let mut buckets = vec![user.as_str()];
        buckets.extend(address.as_deref());
        let locked = self.locked(&buckets).await?;
        if let Some(locked) = locked {
            tracing::warn!(
                event = "login.locked",
                user.name = %username,
                client.addr = address.as_deref().map(tracing::field::display),
                retry_after_secs = locked.retry_after.as_secs(),
                "sign-in refused: too many failed attempts"
            );
        }
        Ok(locked)
    }

    /// Counts a failed sign-in; logs it, and the lock-out when this one reached a limit.
    pub async fn record_failure(
        &self,
        username: &str,
        address: Option<IpAddr>,
    ) -> Result<(), DbError> {
        let now = now();
        let mut buckets = vec![user_bucket(username)];
        buckets.extend(address.map(address_bucket));
        let mut reached = Vec::new();
        for bucket in &buckets {
            let count = self
                .db
                .count_failure(bucket, now, now - self.window)
                .await?;
            if count.failures == self.limit_of(bucket) {
                reached.push(bucket.as_str());
            }
        }
        tracing::warn!(
            event = "login.failure",
            user.name = %username,
            client.addr = address.map(tracing::field::display),
            "failed sign-in"
        );
        for bucket in reached {
            tracing::warn!(
                event = "login.lockout",
                user.name = %username,
                client.addr = address.map(tracing::field::display),
                bucket,
                window_secs = self.window,
                "too many failed sign-ins: locked for the rest of the window"
            );
        }
        Ok(())
    }

    /// A successful sign-in clears its username's count.
    pub async fn record_success(&self, username: &str) -> Result<(), DbError> {
        self.db.clear_failures(&user_bucket(username)).await
    }

    /// Counts a sign-up attempt from `address`; refuses it when the address is at its limit.
    pub async fn check_signup(&self, address: Option<IpAddr>) -> Result<Option<Locked>, DbError> {
        let Some(address) = address else {
            return Ok(None);
        };
        let bucket = signup_bucket(address);
        if let Some(locked) = self.locked(&[&bucket]).await? {
            tracing::warn!(
                event = "signup.locked",
                client.addr = %address,
                retry_after_secs = locked.retry_after.as_secs(),
                "sign-up refused: too many attempts from this address"
            );
            return Ok(Some(locked));
        }
        let now = now();
        self.db
            .count_failure(&bucket, now, now - self.window)
            .await?;
        Ok(None)
    }

    /// Deletes the counters whose window is over; returns how many.
    pub async fn sweep(&self) -> Result<u64, DbError> {
        self.db.sweep_failures(now() - self.window).await
    }
}
