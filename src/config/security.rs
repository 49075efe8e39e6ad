//! What members and visitors may do and make the server do: `PASSWORD_HASH_CONCURRENCY`,
//! `AVATAR_PROCESSING_CONCURRENCY`, `LOGIN_FAILURE_LIMIT`, `LOGIN_ADDRESS_FAILURE_LIMIT`,
//! `SIGNUP_ADDRESS_LIMIT`, `LOGIN_FAILURE_WINDOW_SECS`, `SESSION_IDLE_SECS`,
//! `SESSION_MAX_AGE_SECS`; and the forms' limits: `ALLOW_SIGNUP`, `AVATAR_MAX_BYTES`,
//! `RESUME_MAX_BYTES`, `DIRECT_UPLOAD_EXPIRE`, `DIRECT_UPLOAD_METHOD`.

use std::time::Duration;

use super::{ConfigError, Environment, Vars, one_of, parse, positive};

/// Bounds on what an anonymous client can make the server compute, and how long a sign-in
/// lasts.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// `PASSWORD_HASH_CONCURRENCY`: argon2 computations at once (sign-in, sign-up, change).
    pub password_hash_concurrency: usize,
    /// `AVATAR_PROCESSING_CONCURRENCY`: avatar decodes and re-encodes at once.
    pub avatar_processing_concurrency: usize,
    /// `EXPORT_CONCURRENCY`: data exports streaming at once, per instance.
    pub export_concurrency: usize,
    /// `LOGIN_FAILURE_LIMIT`: failed sign-ins per username within the window.
    pub login_failure_limit: u32,
    /// `LOGIN_ADDRESS_FAILURE_LIMIT`: failed sign-ins per client address within the window.
    pub login_address_failure_limit: u32,
    /// `SIGNUP_ADDRESS_LIMIT`: sign-up attempts per client address within the window.
    pub signup_address_limit: u32,
    /// `LOGIN_FAILURE_WINDOW_SECS`.
    pub login_failure_window: Duration,
    /// `SESSION_IDLE_SECS`: a session unused this long ends.
    pub session_idle: Duration,
    /// `SESSION_MAX_AGE_SECS`: a session ends this long after its sign-in, used or not.
    pub session_max_age: Duration,
}

impl SecurityConfig {
    pub(super) fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get) as u64;
        let count = |var: &'static str, default: u64| -> Result<u32, ConfigError> {
            u32::try_from(positive(vars, var, default)?)
                .map_err(|_| ConfigError::new(var, "is too large"))
        };
        let session_idle = Duration::from_secs(positive(vars, "SESSION_IDLE_SECS", 14 * 86_400)?);
        let session_max_age =
            Duration::from_secs(positive(vars, "SESSION_MAX_AGE_SECS", 30 * 86_400)?);
        Ok(Self {
            password_hash_concurrency: count("PASSWORD_HASH_CONCURRENCY", cores)? as usize,
            avatar_processing_concurrency: count("AVATAR_PROCESSING_CONCURRENCY", cores)? as usize,
            export_concurrency: count("EXPORT_CONCURRENCY", 2)? as usize,
            login_failure_limit: count("LOGIN_FAILURE_LIMIT", 5)?,
            login_address_failure_limit: count("LOGIN_ADDRESS_FAILURE_LIMIT", 50)?,
            signup_address_limit: count("SIGNUP_ADDRESS_LIMIT", 10)?,
            login_failure_window: Duration::from_secs(positive(
                vars,
                "LOGIN_FAILURE_WINDOW_SECS",
                900,
            )?),
            session_idle,
            session_max_age,
        })
    }
}

/// Limits and switches of the member-facing forms.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    pub allow_signup: bool,
    pub avatar_max_bytes: u64,
    pub resume_max_bytes: u64,
    /// `DIRECT_UPLOAD_EXPIRE`: how long a direct upload (presigned POST or PUT) may start.
    pub direct_upload_expire: Duration,
    /// `DIRECT_UPLOAD_METHOD`: how the browser sends a file straight to S3.
    pub direct_upload_method: DirectUploadMethod,
}

/// How a browser uploads straight to S3: a presigned POST form (S3's browser upload, the
/// default), or a presigned PUT for stores that have no browser POST (Cloudflare R2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectUploadMethod {
    Post,
    Put,
}

impl UploadConfig {
    pub(super) fn from_vars(vars: &dyn Vars, env: Environment) -> Result<Self, ConfigError> {
        let uploads = UploadConfig {
            allow_signup: parse(vars, "ALLOW_SIGNUP", env == Environment::Development)?,
            avatar_max_bytes: positive(vars, "AVATAR_MAX_BYTES", 5 * 1024 * 1024)?,
            resume_max_bytes: positive(vars, "RESUME_MAX_BYTES", 10 * 1024 * 1024)?,
            direct_upload_expire: Duration::from_secs(positive(vars, "DIRECT_UPLOAD_EXPIRE", 120)?),
            direct_upload_method: one_of(
                vars,
                "DIRECT_UPLOAD_METHOD",
                DirectUploadMethod::Post,
                &[
                    ("post", DirectUploadMethod::Post),
                    ("put", DirectUploadMethod::Put),
                ],
            )?,
        };
        if uploads.direct_upload_expire > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "DIRECT_UPLOAD_EXPIRE",
                "must be at most 3600 seconds: an upload is confirmed within the hour",
            ));
        }
        Ok(uploads)
    }
}
