//! The live instance a staging instance is built from: `LIVE_DATABASE_URL`,
//! `LIVE_AWS_STORAGE_BUCKET_NAME`, `LIVE_AWS_PRIVATE_STORAGE_BUCKET_NAME`,
//! `LIVE_READ_ONLY_ACCESS_KEY_ID`, `LIVE_READ_ONLY_SECRET_KEY`, and the endpoint and region.

use super::storage::s3_from_vars;
use super::{ConfigError, ProcessEnv, S3Config, Vars, required};

/// The live instance a staging instance is built from (`make-staging`, `copy-media`), read only
/// by those commands: its database URL (so staging never scrubs live) and its media storage,
/// reached with a read-only key pair.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// `LIVE_DATABASE_URL`.
    pub database_url: Option<String>,
    /// From `LIVE_AWS_STORAGE_BUCKET_NAME`, `LIVE_READ_ONLY_ACCESS_KEY_ID`,
    /// `LIVE_READ_ONLY_SECRET_KEY`, and the optional `LIVE_AWS_PRIVATE_STORAGE_BUCKET_NAME`,
    /// `LIVE_AWS_S3_ENDPOINT_URL`, `LIVE_AWS_S3_REGION_NAME` (these two default to the
    /// staging ones). `None` when no live bucket is set.
    pub s3: Option<S3Config>,
}

/// The live variables and the media ones they stand for.
const LIVE_NAMES: [(&str, &str); 6] = [
    ("AWS_STORAGE_BUCKET_NAME", "LIVE_AWS_STORAGE_BUCKET_NAME"),
    ("AWS_ACCESS_KEY_ID", "LIVE_READ_ONLY_ACCESS_KEY_ID"),
    ("AWS_SECRET_ACCESS_KEY", "LIVE_READ_ONLY_SECRET_KEY"),
    (
        "AWS_PRIVATE_STORAGE_BUCKET_NAME",
        "LIVE_AWS_PRIVATE_STORAGE_BUCKET_NAME",
    ),
    ("AWS_S3_ENDPOINT_URL", "LIVE_AWS_S3_ENDPOINT_URL"),
    ("AWS_S3_REGION_NAME", "LIVE_AWS_S3_REGION_NAME"),
];

impl LiveConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&ProcessEnv)
    }

    pub fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let s3 = match vars.get("LIVE_AWS_STORAGE_BUCKET_NAME") {
            None => None,
            Some(_) => Some({
                // Live is read with its read-only key, never with whatever the chain finds.
                required(
                    vars,
                    "LIVE_READ_ONLY_ACCESS_KEY_ID",
                    "to copy media from live",
                )?;
                s3_from_vars(&LiveOverlay(vars), "to copy media from live").map_err(|mut e| {
                    // Name the variable the operator sets, not the one it stands for.
                    if let Some((_, live)) = LIVE_NAMES.iter().find(|(media, _)| *media == e.var) {
                        e.var = live;
                    }
                    e
                })?
            }),
        };
        Ok(Self {
            database_url: vars.get("LIVE_DATABASE_URL"),
            s3,
        })
    }
}

/// The media S3 variables read from their live counterparts. The bucket and keys never fall
/// back to staging's; the endpoint and region do.
struct LiveOverlay<'a>(&'a dyn Vars);

impl Vars for LiveOverlay<'_> {
    fn get(&self, name: &str) -> Option<String> {
        match LIVE_NAMES.iter().find(|(media, _)| *media == name) {
            Some((media, live)) => self.0.get(live).or_else(|| {
                matches!(*media, "AWS_S3_ENDPOINT_URL" | "AWS_S3_REGION_NAME")
                    .then(|| self.0.get(media))
                    .flatten()
            }),
            // Live objects are only read: no ACL, no custom domain; and staging's session
            // token is no part of live's keys.
            None if matches!(
                name,
                "AWS_DEFAULT_ACL" | "AWS_S3_CUSTOM_DOMAIN" | "AWS_SESSION_TOKEN"
            ) =>
            {
                None
            }
            None => self.0.get(name),
        }
    }
}
