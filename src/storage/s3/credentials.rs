//! The S3 keys of one configuration, in one place for the SDK client and the presigner.
//!
//! Static keys (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) never change.
//! Without them, keys come from the standard AWS chain (`aws-config`: the environment, the
//! shared profile, a web identity token, ECS container credentials, EC2 instance metadata), as
//! boto3 and aws-sdk-ruby find them, and a task keeps them fresh: each set is replaced well
//! before it expires, so a presigned URL made with it outlives its default 10 minutes. The
//! presigner reads the current set without waiting (presigning stays local CPU work); the SDK
//! client asks the same source, so both always sign with one set.

use std::time::{Duration, SystemTime};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError, future};
use aws_smithy_runtime_api::client::identity::Identity;
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::config::S3Keys;

/// Refresh when less than this is left (or half the lifetime, for short-lived sets).
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(15 * 60);
/// After a failed fetch, try again this soon.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// A set of keys and the signing identity made from it.
#[derive(Clone, Debug)]
pub(super) struct Current {
    pub(super) credentials: Credentials,
    pub(super) identity: Identity,
}

impl Current {
    fn new(credentials: Credentials) -> Self {
        Self {
            identity: credentials.clone().into(),
            credentials,
        }
    }
}

/// Where the keys come from, shared by a client and its storages' presigners.
#[derive(Clone, Debug)]
pub struct KeySource {
    current: watch::Receiver<Option<Current>>,
}

impl KeySource {
    /// Static keys when configured, else the standard chain, refreshed by a task of the
    /// current Tokio runtime.
    pub fn new(keys: Option<&S3Keys>, region: &str) -> Self {
        match keys {
            Some(keys) => {
                let credentials = Credentials::new(
                    &keys.access_key_id,
                    keys.secret_access_key.expose_secret(),
                    keys.session_token
                        .as_ref()
                        .map(|t| t.expose_secret().to_owned()),
                    None,
                    "stowage-environment",
                );
                let (_, current) = watch::channel(Some(Current::new(credentials)));
                Self { current }
            }
            None => {
                let (sender, current) = watch::channel(None);
                tokio::spawn(refresh(sender, region.to_owned()));
                Self { current }
            }
        }
    }

    /// The keys to sign with now, if any have arrived.
    pub(super) fn current(&self) -> Option<Current> {
        self.current.borrow().clone()
    }
}

impl ProvideCredentials for KeySource {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let mut current = self.current.clone();
            let arrived =
                tokio::time::timeout(Duration::from_secs(10), current.wait_for(Option::is_some))
                    .await;
            let found = arrived
                .ok()
                .and_then(Result::ok)
                .and_then(|set| set.as_ref().map(|c| c.credentials.clone()));
            found.ok_or_else(|| {
                CredentialsError::not_loaded("no S3 credentials from the AWS credential chain yet")
            })
        })
    }
}

/// Fetches keys from the chain, then again before each set expires, until every
/// [`KeySource`] is gone.
async fn refresh(sender: watch::Sender<Option<Current>>, region: String) {
    let chain = DefaultCredentialsChain::builder()
        .region(aws_config::Region::new(region))
        .build()
        .await;
    loop {
        let wait = match chain.provide_credentials().await {
            Ok(credentials) => {
                let wait = refresh_in(credentials.expiry(), SystemTime::now());
                tracing::info!(
                    expires_in_secs = credentials
                        .expiry()
                        .and_then(|e| e.duration_since(SystemTime::now()).ok())
                        .map(|d| d.as_secs()),
                    "S3 credentials from the AWS credential chain"
                );
                if sender.send(Some(Current::new(credentials))).is_err() {
                    return;
                }
                match wait {
                    Some(wait) => wait,
                    None => return, // they never expire
                }
            }
            Err(e) => {
                tracing::warn!(error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "no S3 credentials from the AWS credential chain");
                RETRY_AFTER_FAILURE
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = sender.closed() => return,
        }
    }
}

/// How long until keys expiring at `expiry` are to be replaced: [`REFRESH_BEFORE_EXPIRY`]
/// before, or halfway for shorter-lived ones; `None` for keys that never expire.
fn refresh_in(expiry: Option<SystemTime>, now: SystemTime) -> Option<Duration> {
    let left = expiry?.duration_since(now).unwrap_or_default();
    let wait = if left > REFRESH_BEFORE_EXPIRY * 2 {
        left - REFRESH_BEFORE_EXPIRY
    } else {
        left / 2
    };
    Some(wait.max(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_replaced_well_before_they_expire() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let in_secs = |s| Some(now + Duration::from_secs(s));
        assert_eq!(refresh_in(None, now), None);
        // Six hours: replaced with 15 minutes left.
        assert_eq!(
            refresh_in(in_secs(6 * 3600), now),
            Some(Duration::from_secs(6 * 3600 - 900))
        );
        // Short-lived: halfway.
        assert_eq!(refresh_in(in_secs(40), now), Some(Duration::from_secs(20)));
        // Already expired: at once, but not in a busy loop.
        assert_eq!(
            refresh_in(Some(now - Duration::from_secs(5)), now),
            Some(Duration::from_secs(1))
        );
    }
}
