//! Throttled sign-in, as django-axes and Rails 8's `rate_limit` do it, but shared by every
//! instance: failures are counted in the database (see [`crate::db::login_failures`]).
//!
//! - `user:<name>`: failed sign-ins for one username (any case), at most
//!   `LOGIN_FAILURE_LIMIT` (5) per `LOGIN_FAILURE_WINDOW_SECS` (15 minutes). Against guessing
//!   one member's password from many addresses.
//! - `addr:<ip>`: failed sign-ins from one client address, at most
//!   `LOGIN_ADDRESS_FAILURE_LIMIT` (50) per window. Against spraying a few passwords over
//!   every public username. An IPv6 client is its /64, the block one subscriber gets.
//! - `signup:<ip>`: sign-up attempts from one address, at most `SIGNUP_ADDRESS_LIMIT` (10)
//!   per window: each one costs a hash and may create an account.
//! - `recheck:<member id>`: a signed-in member's password asked again (export, deletion, a
//!   new password), at the username's limit. A bucket of its own, so that a stranger locking
//!   a username out of signing in does not lock its member out of their own account.
//!
//! Usernames are bucketed by [`username_key`], the one normalisation the user
//! table is searched by, so that no spelling of a name (`ADMİN`, fullwidth letters) opens a
//! bucket of its own for the same member.
//!
//! Every attempt is counted before its password is hashed (an attempt is a failure until it
//! succeeds), so a burst of concurrent guesses cannot all pass a check made before any of them
//! is counted. An attempt over a limit is refused before any hashing, with the time the window
//! ends; a bucket already over its limit is only read, never written, so a flood on one
//! locked bucket queues nobody on its row; and once a process has seen it locked, it is not
//! even read until it opens. A success clears its username's count and takes its own attempt
//! back from the address's. Every failure and lock-out is logged, never the password.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::SecurityConfig;
use crate::db::users::username_key;
use crate::db::{Database, DbError, now};

/// A refusal: the bucket is over its limit until `retry_after` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub retry_after: Duration,
}

/// How many locked buckets a process remembers at most (some 100 bytes each).
const LOCKED_REMEMBERED: u64 = 100_000;

fn locked_until(opens_at: i64, now: i64) -> Locked {
    Locked {
        retry_after: Duration::from_secs((opens_at - now).max(1) as u64),
    }
}

/// The limits, and the database that counts; cheap to clone.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    db: Database,
    /// Buckets this process found locked, with when each opens (unix seconds). A bucket only
    /// opens with time while it is locked (nothing can succeed through it), so remembering that
    /// is right on every instance; a flood on a locked name then costs no database round trip.
    locked: moka::sync::Cache<String, i64>,
    user_limit: i64,
    address_limit: i64,
    signup_limit: i64,
    window: i64,
}

fn user_bucket(username: &str) -> String {
    format!("user:{}", username_key(username))
}

fn address_bucket(address: IpAddr) -> String {
    format!("addr:{}", client_block(address))
}

fn signup_bucket(address: IpAddr) -> String {
    format!("signup:{}", client_block(address))
}

fn recheck_bucket(user_id: i64) -> String {
    format!("recheck:{user_id}")
}

/// The block of addresses one client holds: an IPv4 address, or an IPv6 /64 (a subscriber's
/// smallest allocation: per /128, one client would have 2^64 buckets).
fn client_block(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(network))
        }
    }
}

impl LoginThrottle {
    pub fn new(db: Database, config: &SecurityConfig) -> Self {
        Self {
            db,
            locked: moka::sync::Cache::builder()
                .max_capacity(LOCKED_REMEMBERED)
                .time_to_live(config.login_failure_window)
                .build(),
            user_limit: i64::from(config.login_failure_limit),
            address_limit: i64::from(config.login_address_failure_limit),
            signup_limit: i64::from(config.signup_address_limit),
            window: config.login_failure_window.as_secs() as i64,
        }
    }

    fn limit_of(&self, bucket: &str) -> i64 {
        if bucket.starts_with("user:") || bucket.starts_with("recheck:") {
            self.user_limit
        } else if bucket.starts_with("signup:") {
            self.signup_limit
        } else {
            self.address_limit
        }
    }

    /// Counts one attempt in each of `buckets` in turn (one upsert each) before anything is
    /// hashed, so that concurrent attempts cannot all slip in under the limit; returns the
    /// counts and, when a bucket is over its limit, the lock-out. A bucket already over its
    /// limit is found by a read first, and then nothing is written: a flood on one locked
    /// bucket costs reads, not a queue on its row's lock. The buckets after a locked one are
    /// not counted either: a locked address writes no row for each username it tries.
    async fn count_attempt(&self, buckets: &[&str]) -> Result<(Vec<i64>, Option<Locked>), DbError> {
        let now = now();
        if let Some(opens_at) = buckets
            .iter()
            .filter_map(|bucket| self.locked.get(*bucket))
            .filter(|opens_at| *opens_at > now)
            .max()
        {
            return Ok((Vec::new(), Some(locked_until(opens_at, now))));
        }
        let since = now - self.window;
        let current = self.db.failure_counts(buckets, since).await?;
        let mut opens_at = None;
        for (bucket, count) in buckets.iter().zip(&current) {
            if let Some(count) = count.filter(|c| c.failures > self.limit_of(bucket)) {
                let at = count.window_started_at + self.window;
                self.locked.insert((*bucket).to_owned(), at);
                opens_at = opens_at.max(Some(at));
            }
        }
        if let Some(opens_at) = opens_at {
            return Ok((Vec::new(), Some(locked_until(opens_at, now))));
        }
        let mut counts = Vec::with_capacity(buckets.len());
        let mut opens_at = None;
        for bucket in buckets {
            let count = self.db.count_failure(bucket, now, since).await?;
            counts.push(count.failures);
            if count.failures > self.limit_of(bucket) {
                let at = count.window_started_at + self.window;
                self.locked.insert((*bucket).to_owned(), at);
                opens_at = Some(at);
                break;
            }
        }
        Ok((counts, opens_at.map(|at| locked_until(at, now))))
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

    /// Counts a signed-in member's password asked again (see `recheck:` above); refused
    /// (`Some`) when their own re-checks are over the limit.
    pub async fn attempt_recheck(&self, user_id: i64) -> Result<Option<Locked>, DbError> {
        let bucket = recheck_bucket(user_id);
        let (_, locked) = self.count_attempt(&[&bucket]).await?;
        Ok(locked)
    }

    /// The re-check succeeded: its count is cleared.
    pub async fn recheck_succeeded(&self, user_id: i64) -> Result<(), DbError> {
        self.db.clear_failures(&recheck_bucket(user_id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_its_64_and_an_ipv4_one_its_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_bucket(a), "addr:2001:db8:1:2::/64");
        assert_eq!(address_bucket(a), address_bucket(b));
        assert_ne!(address_bucket(a), address_bucket(other));
        assert_eq!(signup_bucket(a), "signup:2001:db8:1:2::/64");
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(address_bucket(v4), "addr:203.0.113.9");
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(address_bucket(mapped), "addr:203.0.113.9");
    }

    #[test]
    fn every_spelling_of_a_username_shares_its_bucket() {
        assert_eq!(user_bucket("Ada"), user_bucket("ADA"));
        // Fullwidth letters are the same name after NFKC.
        assert_eq!(user_bucket("\u{FF21}da"), user_bucket("ada"));
        // U+0130 lowercases to "i" and a combining dot, in Rust and in the stored key alike.
        assert_eq!(user_bucket("ADM\u{130}N"), user_bucket("adm\u{130}n"));
        assert_eq!(recheck_bucket(7), "recheck:7");
    }
}
