//! Every environment variable stowage reads, typed, with defaults and validation.
//!
//! Configuration is read once at start-up ([`Config::from_env`]); a bad value stops the process
//! with a message that names the variable. Names follow django-storages where one exists, so a
//! Django team recognises them.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// The embedded default database.
const DEFAULT_DATABASE_URL: &str = "sqlite://data/stowage.db";

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self {
            var,
            message: message.into(),
        }
    }
}

/// Where the process runs; production refuses insecure defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// Which backend a storage uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageBackend {
    Filesystem,
    S3,
}

/// How S3 URLs name the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressingStyle {
    /// Path style with a custom endpoint, virtual-hosted style on AWS.
    Auto,
    Path,
    Virtual,
}

/// `LOG_FORMAT`: text lines for people, JSON lines for platforms that ship stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// Read on its own, before the rest of the configuration, so that logging works while
    /// the rest is validated (and can report what is wrong with it).
    pub fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
        one_of(
            vars,
            "LOG_FORMAT",
            LogFormat::Text,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        )
    }
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub env: Environment,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    /// How long sessions, users and resume references may be served from memory.
    pub cache_ttl: Duration,
    pub secret_key: SecretString,
    /// Development without `SECRET_KEY`: the key was made up while parsing, and
    /// [`Config::keep_development_secret_key`] is to keep it for the next run.
    unsaved_development_key: bool,
    pub media: MediaConfig,
    pub s3: Option<S3Config>,
    pub statics: StaticConfig,
    /// Whether the session cookie is marked `Secure` (sent over HTTPS only).
    pub session_cookie_secure: bool,
    pub uploads: UploadConfig,
    pub security: SecurityConfig,
}

/// Bounds on what an anonymous client can make the server compute, and how long a sign-in
/// lasts.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// `PASSWORD_HASH_CONCURRENCY`: argon2 computations at once (sign-in, sign-up, change).
    pub password_hash_concurrency: usize,
    /// `AVATAR_PROCESSING_CONCURRENCY`: avatar decodes and re-encodes at once.
    pub avatar_processing_concurrency: usize,
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
    fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
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
    /// `DIRECT_UPLOAD_EXPIRE`: how long a direct-upload form (presigned POST) is valid.
    pub direct_upload_expire: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    /// How long in-flight requests may finish after SIGTERM or SIGINT.
    pub shutdown_grace: Duration,
    /// The longest any request other than an upload may take.
    pub request_timeout: Duration,
    /// The longest an avatar or resume upload through the app may take.
    pub upload_timeout: Duration,
    /// Believe `X-Forwarded-Proto` and `X-Forwarded-For` (set by the platform's router).
    pub trust_proxy: bool,
    /// Redirect plain-http requests to https.
    pub force_https: bool,
}

/// `DATABASE_URL` and how the pool talks to it.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: String,
    pub pool_size: u32,
    /// How long start-up keeps retrying a database that does not answer.
    pub connect_timeout: Duration,
}

impl DatabaseConfig {
    fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let url = vars
            .get("DATABASE_URL")
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        Ok(Self {
            url,
            pool_size: u32::try_from(positive(vars, "DATABASE_POOL_SIZE", 10)?)
                .map_err(|_| ConfigError::new("DATABASE_POOL_SIZE", "is too large"))?,
            connect_timeout: Duration::from_secs(parse(vars, "DATABASE_CONNECT_TIMEOUT_SECS", 30)?),
        })
    }

    /// Another database's URL (`LIVE_DATABASE_URL`), with the default pool settings.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = [("DATABASE_URL".to_owned(), url.to_owned())].into();
        Self::from_vars(&vars)
    }

    /// The same database with a pool of `size` connections (the one-shot commands need one
    /// or two).
    pub fn with_pool_size(mut self, size: u32) -> Self {
        self.pool_size = size;
        self
    }
}

/// The file storages (`public`, `private`, `static`) and how their objects are served.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub backend: StorageBackend,
    pub root: PathBuf,
    /// Base URL of public media served by the app (filesystem backend).
    pub url: String,
    /// Lifetime of signed URLs (`AWS_QUERYSTRING_EXPIRE`).
    pub querystring_expire: Duration,
    pub cache_control: String,
    pub assets_prefix: String,
}

/// Where `collectstatic` puts the assets of `static/` and where pages link to them.
#[derive(Debug, Clone)]
pub struct StaticConfig {
    /// `STATICFILES_STORAGE`.
    pub backend: StorageBackend,
    /// `STATIC_ROOT`: the filesystem backend's directory; assets go under `ASSETS_PREFIX` in it.
    pub root: PathBuf,
    /// `STATIC_URL` when set; otherwise `/static/` on the filesystem, or the bucket's public URL
    /// plus the prefix on S3.
    pub url: Option<String>,
    /// S3 settings of the static storage: the media ones, with `STATIC_AWS_STORAGE_BUCKET_NAME`,
    /// `STATIC_AWS_ACCESS_KEY_ID` and `STATIC_AWS_SECRET_ACCESS_KEY` in place of theirs when set.
    pub s3: Option<S3Config>,
}

/// S3 settings, present when any storage uses the S3 backend.
#[derive(Clone)]
pub struct S3Config {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub bucket: String,
    pub private_bucket: Option<String>,
    pub region: String,
    pub endpoint_url: Option<url::Url>,
    pub addressing_style: AddressingStyle,
    pub default_acl: Option<String>,
    pub custom_domain: Option<String>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field("bucket", &self.bucket)
            .field("private_bucket", &self.private_bucket)
            .field("region", &self.region)
            .field(
                "endpoint_url",
                &self.endpoint_url.as_ref().map(url::Url::as_str),
            )
            .field("addressing_style", &self.addressing_style)
            .field("default_acl", &self.default_acl)
            .field("custom_domain", &self.custom_domain)
            .finish()
    }
}

impl S3Config {
    /// Whether URLs put the bucket in the path rather than the host name.
    pub fn path_style(&self) -> bool {
        match self.addressing_style {
            AddressingStyle::Path => true,
            AddressingStyle::Virtual => false,
            AddressingStyle::Auto => self.endpoint_url.is_some() || self.bucket.contains('.'),
        }
    }
}

/// A source of variables: the process environment, or a map in tests.
pub trait Vars {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Vars for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).filter(|v| !v.is_empty()).cloned()
    }
}

fn parse<T: std::str::FromStr>(
    vars: &dyn Vars,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match vars.get(var) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| ConfigError::new(var, format!("invalid value {raw:?}: {e}"))),
    }
}

fn positive(vars: &dyn Vars, var: &'static str, default: u64) -> Result<u64, ConfigError> {
    match parse(vars, var, default)? {
        0 => Err(ConfigError::new(var, "must be greater than 0")),
        n => Ok(n),
    }
}

fn one_of<T: Copy>(
    vars: &dyn Vars,
    var: &'static str,
    default: T,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    let Some(raw) = vars.get(var) else {
        return Ok(default);
    };
    let wanted = raw.trim().to_ascii_lowercase();
    choices
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            ConfigError::new(
                var,
                format!(
                    "invalid value {raw:?}; expected one of {}",
                    names.join(", ")
                ),
            )
        })
}

/// A value sent as a header as it is: visible ASCII, spaces and tabs only.
fn header_value(vars: &dyn Vars, var: &'static str, default: &str) -> Result<String, ConfigError> {
    let value = vars.get(var).unwrap_or_else(|| default.to_owned());
    if value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        Ok(value)
    } else {
        Err(ConfigError::new(var, "is not a valid header value"))
    }
}

fn required(vars: &dyn Vars, var: &'static str, why: &str) -> Result<String, ConfigError> {
    vars.get(var)
        .ok_or_else(|| ConfigError::new(var, format!("is required {why}")))
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&ProcessEnv)
    }

    /// Reads the configuration from any source of variables.
    pub fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let env = one_of(
            vars,
            "STOWAGE_ENV",
            Environment::Development,
            &[
                ("development", Environment::Development),
                ("production", Environment::Production),
            ],
        )?;
        let request_timeout = Duration::from_secs(positive(vars, "REQUEST_TIMEOUT_SECS", 25)?);
        let trust_proxy = parse(vars, "TRUST_PROXY", false)?;
        let force_https = parse(vars, "FORCE_HTTPS", false)?;
        if force_https && !trust_proxy {
            return Err(ConfigError::new(
                "FORCE_HTTPS",
                "needs TRUST_PROXY=true: stowage speaks plain http and learns that a request \
                 came over https from the proxy's X-Forwarded-Proto",
            ));
        }
        let server = ServerConfig {
            host: parse(vars, "HOST", IpAddr::from([127, 0, 0, 1]))?,
            port: parse(vars, "PORT", 8000)?,
            shutdown_grace: Duration::from_secs(parse(vars, "SHUTDOWN_GRACE_SECS", 25)?),
            request_timeout,
            upload_timeout: Duration::from_secs(positive(vars, "UPLOAD_TIMEOUT_SECS", 120)?),
            trust_proxy,
            force_https,
        };
        let database = DatabaseConfig::from_vars(vars)?;

        let mut unsaved_development_key = false;
        let secret_key = match (vars.get("SECRET_KEY"), env) {
            (Some(key), _) if key.len() < 32 => {
                return Err(ConfigError::new(
                    "SECRET_KEY",
                    "must be at least 32 characters long",
                ));
            }
            (Some(key), _) => SecretString::from(key),
            (None, Environment::Production) => {
                return Err(ConfigError::new(
                    "SECRET_KEY",
                    "is required when STOWAGE_ENV=production",
                ));
            }
            (None, Environment::Development) => {
                match kept_development_key(Path::new(DEVELOPMENT_KEY_DIR)) {
                    Some(key) => key,
                    None => {
                        unsaved_development_key = true;
                        SecretString::from(hex::encode(rand::random::<[u8; 32]>()))
                    }
                }
            }
        };

        let backend = one_of(
            vars,
            "DEFAULT_FILE_STORAGE",
            StorageBackend::Filesystem,
            &[
                ("filesystem", StorageBackend::Filesystem),
                ("s3", StorageBackend::S3),
            ],
        )?;
        let mut media_url = vars.get("MEDIA_URL").unwrap_or_else(|| "/media/".into());
        if !media_url.ends_with('/') {
            media_url.push('/');
        }
        let expire_secs: u64 = parse(vars, "AWS_QUERYSTRING_EXPIRE", 600)?;
        // SigV4 presigned URLs cannot live longer than seven days.
        if expire_secs == 0 || expire_secs > 604_800 {
            return Err(ConfigError::new(
                "AWS_QUERYSTRING_EXPIRE",
                "must be between 1 and 604800 seconds",
            ));
        }
        let assets_prefix = vars
            .get("ASSETS_PREFIX")
            .unwrap_or_else(|| "assets".into())
            .trim_matches('/')
            .to_owned();
        let media = MediaConfig {
            backend,
            root: vars
                .get("MEDIA_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("data/media")),
            url: media_url,
            querystring_expire: Duration::from_secs(expire_secs),
            cache_control: header_value(vars, "MEDIA_CACHE_CONTROL", "max-age=86400")?,
            assets_prefix,
        };

        let s3 = if backend == StorageBackend::S3 {
            Some(s3_from_vars(vars, "when DEFAULT_FILE_STORAGE=s3")?)
        } else {
            None
        };

        let static_backend = one_of(
            vars,
            "STATICFILES_STORAGE",
            StorageBackend::Filesystem,
            &[
                ("filesystem", StorageBackend::Filesystem),
                ("s3", StorageBackend::S3),
            ],
        )?;
        let statics = StaticConfig {
            backend: static_backend,
            root: vars
                .get("STATIC_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("data/static")),
            url: vars.get("STATIC_URL").map(|mut url| {
                if !url.ends_with('/') {
                    url.push('/');
                }
                url
            }),
            s3: if static_backend == StorageBackend::S3 {
                Some(s3_from_vars(
                    &StaticOverlay(vars),
                    "when STATICFILES_STORAGE=s3",
                )?)
            } else {
                None
            },
        };

        let cache_ttl = Duration::from_secs(parse(vars, "CACHE_TTL_SECS", 5)?);
        let session_cookie_secure = parse(
            vars,
            "SESSION_COOKIE_SECURE",
            env == Environment::Production,
        )?;

        let uploads = UploadConfig {
            allow_signup: parse(vars, "ALLOW_SIGNUP", env == Environment::Development)?,
            avatar_max_bytes: positive(vars, "AVATAR_MAX_BYTES", 5 * 1024 * 1024)?,
            resume_max_bytes: positive(vars, "RESUME_MAX_BYTES", 10 * 1024 * 1024)?,
            direct_upload_expire: Duration::from_secs(positive(vars, "DIRECT_UPLOAD_EXPIRE", 120)?),
        };
        if uploads.direct_upload_expire > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "DIRECT_UPLOAD_EXPIRE",
                "must be at most 3600 seconds: an upload is confirmed within the hour",
            ));
        }
        let security = SecurityConfig::from_vars(vars)?;

        LogFormat::from_vars(vars)?;

        Ok(Self {
            env,
            server,
            database,
            cache_ttl,
            secret_key,
            unsaved_development_key,
            media,
            s3,
            statics,
            session_cookie_secure,
            uploads,
            security,
        })
    }

    /// Reads only what the database commands need, so `migrate` and `createuser` work with an
    /// incomplete storage configuration.
    pub fn database_from_env() -> Result<DatabaseConfig, ConfigError> {
        DatabaseConfig::from_vars(&ProcessEnv)
    }

    /// In development without `SECRET_KEY`, keeps the key made up while parsing in
    /// `data/secret_key`, so that signed URLs and sessions survive a restart with no
    /// configuration (`serve` calls this; parsing itself writes nothing).
    pub fn keep_development_secret_key(mut self) -> Result<Self, ConfigError> {
        if self.unsaved_development_key {
            keep_development_key(Path::new(DEVELOPMENT_KEY_DIR), &self.secret_key).map_err(
                |e| {
                    ConfigError::new(
                        "SECRET_KEY",
                        format!("is unset and no development key could be kept in data/: {e}"),
                    )
                },
            )?;
            self.unsaved_development_key = false;
        }
        Ok(self)
    }

    pub fn secret_key(&self) -> &[u8] {
        self.secret_key.expose_secret().as_bytes()
    }
}

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
            Some(_) => Some(
                s3_from_vars(&LiveOverlay(vars), "to copy media from live").map_err(|mut e| {
                    // Name the variable the operator sets, not the one it stands for.
                    if let Some((_, live)) = LIVE_NAMES.iter().find(|(media, _)| *media == e.var) {
                        e.var = live;
                    }
                    e
                })?,
            ),
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
            // Live objects are only read: no ACL, no custom domain.
            None if matches!(name, "AWS_DEFAULT_ACL" | "AWS_S3_CUSTOM_DOMAIN") => None,
            None => self.0.get(name),
        }
    }
}

/// The media S3 variables, with the static storage's own bucket and key pair in their place
/// where those are set (the seed's separate static bucket).
struct StaticOverlay<'a>(&'a dyn Vars);

impl Vars for StaticOverlay<'_> {
    fn get(&self, name: &str) -> Option<String> {
        let own = match name {
            "AWS_STORAGE_BUCKET_NAME" => self.0.get("STATIC_AWS_STORAGE_BUCKET_NAME"),
            "AWS_ACCESS_KEY_ID" => self.0.get("STATIC_AWS_ACCESS_KEY_ID"),
            "AWS_SECRET_ACCESS_KEY" => self.0.get("STATIC_AWS_SECRET_ACCESS_KEY"),
            _ => None,
        };
        own.or_else(|| self.0.get(name))
    }
}

fn s3_from_vars(vars: &dyn Vars, why: &str) -> Result<S3Config, ConfigError> {
    let endpoint_url = match vars.get("AWS_S3_ENDPOINT_URL") {
        None => None,
        Some(raw) => {
            let url = url::Url::parse(raw.trim()).map_err(|e| {
                ConfigError::new("AWS_S3_ENDPOINT_URL", format!("invalid URL {raw:?}: {e}"))
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::new(
                    "AWS_S3_ENDPOINT_URL",
                    "must be an http:// or https:// URL with a host",
                ));
            }
            Some(url)
        }
    };
    let bucket = required(vars, "AWS_STORAGE_BUCKET_NAME", why)?;
    validate_bucket("AWS_STORAGE_BUCKET_NAME", &bucket)?;
    let private_bucket = vars.get("AWS_PRIVATE_STORAGE_BUCKET_NAME");
    if let Some(b) = &private_bucket {
        validate_bucket("AWS_PRIVATE_STORAGE_BUCKET_NAME", b)?;
    }
    let region = vars
        .get("AWS_S3_REGION_NAME")
        .unwrap_or_else(|| "us-east-1".into());
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(ConfigError::new(
            "AWS_S3_REGION_NAME",
            format!("invalid region {region:?}"),
        ));
    }
    Ok(S3Config {
        access_key_id: required(vars, "AWS_ACCESS_KEY_ID", why)?,
        secret_access_key: SecretString::from(required(vars, "AWS_SECRET_ACCESS_KEY", why)?),
        bucket,
        private_bucket,
        region,
        endpoint_url,
        addressing_style: one_of(
            vars,
            "AWS_S3_ADDRESSING_STYLE",
            AddressingStyle::Auto,
            &[
                ("auto", AddressingStyle::Auto),
                ("path", AddressingStyle::Path),
                ("virtual", AddressingStyle::Virtual),
            ],
        )?,
        default_acl: vars.get("AWS_DEFAULT_ACL"),
        custom_domain: vars
            .get("AWS_S3_CUSTOM_DOMAIN")
            .map(|d| d.trim_end_matches('/').to_owned()),
    })
}

fn validate_bucket(var: &'static str, name: &str) -> Result<(), ConfigError> {
    let ok = (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            var,
            format!("{name:?} is not a valid bucket name (3-63 of a-z, 0-9, '-', '.')"),
        ))
    }
}

/// Where development keeps its generated secret key (`data/secret_key`).
const DEVELOPMENT_KEY_DIR: &str = "data";

/// The development key an earlier run kept in `dir`, if there is a usable one.
fn kept_development_key(dir: &Path) -> Option<SecretString> {
    let existing = std::fs::read_to_string(dir.join("secret_key")).ok()?;
    let existing = existing.trim();
    (existing.len() >= 32).then(|| SecretString::from(existing.to_owned()))
}

fn keep_development_key(dir: &Path, key: &SecretString) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("secret_key"), key.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_are_sqlite_and_filesystem_on_port_8000() {
        let config = Config::from_vars(&vars(&[("SECRET_KEY", KEY)])).unwrap();
        assert_eq!(config.server.port, 8000);
        assert_eq!(config.server.host.to_string(), "127.0.0.1");
        assert_eq!(config.database.url, "sqlite://data/stowage.db");
        assert_eq!(config.database.pool_size, 10);
        assert_eq!(config.database.connect_timeout, Duration::from_secs(30));
        assert_eq!(config.server.shutdown_grace, Duration::from_secs(25));
        assert_eq!(config.server.request_timeout, Duration::from_secs(25));
        assert_eq!(config.server.upload_timeout, Duration::from_secs(120));
        assert!(!config.server.trust_proxy && !config.server.force_https);
        assert_eq!(config.media.backend, StorageBackend::Filesystem);
        assert_eq!(config.media.querystring_expire, Duration::from_secs(600));
        assert_eq!(config.media.cache_control, "max-age=86400");
        assert_eq!(config.media.assets_prefix, "assets");
        assert_eq!(config.cache_ttl, Duration::from_secs(5));
        assert!(config.uploads.allow_signup);
        assert_eq!(config.uploads.avatar_max_bytes, 5 * 1024 * 1024);
        assert_eq!(config.uploads.resume_max_bytes, 10 * 1024 * 1024);
        assert!(config.s3.is_none());
        assert_eq!(
            config.uploads.direct_upload_expire,
            Duration::from_secs(120)
        );
        let security = &config.security;
        assert!(security.password_hash_concurrency >= 1);
        assert_eq!(
            (
                security.login_failure_limit,
                security.login_address_failure_limit
            ),
            (5, 50)
        );
        assert_eq!(security.login_failure_window, Duration::from_secs(900));
        assert_eq!(security.session_idle, Duration::from_secs(14 * 86_400));
        assert_eq!(security.session_max_age, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn static_assets_default_to_the_filesystem_and_may_have_their_own_bucket_and_keys() {
        let config = Config::from_vars(&vars(&[("SECRET_KEY", KEY)])).unwrap();
        assert_eq!(config.statics.backend, StorageBackend::Filesystem);
        assert_eq!(config.statics.root, PathBuf::from("data/static"));
        assert!(config.statics.url.is_none() && config.statics.s3.is_none());

        let media = [
            ("SECRET_KEY", KEY),
            ("STATICFILES_STORAGE", "s3"),
            ("AWS_ACCESS_KEY_ID", "media-key"),
            ("AWS_SECRET_ACCESS_KEY", "media-secret"),
            ("AWS_STORAGE_BUCKET_NAME", "media"),
        ];
        let shared = Config::from_vars(&vars(&media)).unwrap();
        let s3 = shared.statics.s3.unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.access_key_id.as_str()),
            ("media", "media-key")
        );
        assert!(shared.s3.is_none(), "media stays on the filesystem");

        let own = [
            ("STATIC_AWS_STORAGE_BUCKET_NAME", "assets"),
            ("STATIC_AWS_ACCESS_KEY_ID", "static-key"),
            ("STATIC_AWS_SECRET_ACCESS_KEY", "static-secret"),
            ("STATIC_URL", "https://cdn.example/assets"),
        ];
        let config = Config::from_vars(&vars(&[&media[..], &own[..]].concat())).unwrap();
        let s3 = config.statics.s3.unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.access_key_id.as_str()),
            ("assets", "static-key")
        );
        assert_eq!(s3.secret_access_key.expose_secret(), "static-secret");
        assert_eq!(
            config.statics.url.as_deref(),
            Some("https://cdn.example/assets/")
        );

        let err = Config::from_vars(&vars(&[("SECRET_KEY", KEY), ("STATICFILES_STORAGE", "s3")]))
            .unwrap_err();
        assert_eq!(err.var, "AWS_STORAGE_BUCKET_NAME");
        assert!(err.message.contains("STATICFILES_STORAGE=s3"));
    }

    #[test]
    fn live_media_is_read_with_its_own_read_only_keys_never_staging_ones() {
        let staging = [
            ("AWS_ACCESS_KEY_ID", "staging-key"),
            ("AWS_SECRET_ACCESS_KEY", "staging-secret"),
            ("AWS_STORAGE_BUCKET_NAME", "staging"),
            ("AWS_S3_REGION_NAME", "eu-west-1"),
        ];
        assert!(LiveConfig::from_vars(&vars(&staging)).unwrap().s3.is_none());
        let partial = [&staging[..], &[("LIVE_AWS_STORAGE_BUCKET_NAME", "live")]].concat();
        let err = LiveConfig::from_vars(&vars(&partial)).unwrap_err();
        assert_eq!(err.var, "LIVE_READ_ONLY_ACCESS_KEY_ID");
        let live = [
            ("LIVE_AWS_STORAGE_BUCKET_NAME", "live"),
            ("LIVE_READ_ONLY_ACCESS_KEY_ID", "ro-key"),
            ("LIVE_READ_ONLY_SECRET_KEY", "ro-secret"),
            ("LIVE_DATABASE_URL", "postgres://live/db"),
        ];
        let config = LiveConfig::from_vars(&vars(&[&staging[..], &live[..]].concat())).unwrap();
        let s3 = config.s3.unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.access_key_id.as_str()),
            ("live", "ro-key")
        );
        assert_eq!(s3.secret_access_key.expose_secret(), "ro-secret");
        assert_eq!(s3.region, "eu-west-1", "the region falls back to staging's");
        assert!(s3.private_bucket.is_none());
        assert_eq!(config.database_url.as_deref(), Some("postgres://live/db"));
    }

    #[test]
    fn bad_port_names_the_variable() {
        let err = Config::from_vars(&vars(&[("SECRET_KEY", KEY), ("PORT", "eighty")])).unwrap_err();
        assert_eq!(err.var, "PORT");
    }

    #[test]
    fn bad_server_and_database_settings_name_their_variable() {
        for (var, value) in [
            ("DATABASE_POOL_SIZE", "0"),
            ("DATABASE_CONNECT_TIMEOUT_SECS", "soon"),
            ("REQUEST_TIMEOUT_SECS", "0"),
            ("SHUTDOWN_GRACE_SECS", "-1"),
            ("TRUST_PROXY", "maybe"),
            ("FORCE_HTTPS", "true"),
            ("PASSWORD_HASH_CONCURRENCY", "0"),
            ("LOGIN_FAILURE_LIMIT", "many"),
            ("SESSION_IDLE_SECS", "0"),
            ("DIRECT_UPLOAD_EXPIRE", "7200"),
        ] {
            let err = Config::from_vars(&vars(&[("SECRET_KEY", KEY), (var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{value}");
        }
        let behind_proxy = [
            ("SECRET_KEY", KEY),
            ("TRUST_PROXY", "true"),
            ("FORCE_HTTPS", "true"),
        ];
        let config = Config::from_vars(&vars(&behind_proxy)).unwrap();
        assert!(config.server.trust_proxy && config.server.force_https);
    }

    #[test]
    fn production_requires_a_secret_key() {
        let err = Config::from_vars(&vars(&[("STOWAGE_ENV", "production")])).unwrap_err();
        assert_eq!(err.var, "SECRET_KEY");
    }

    #[test]
    fn s3_requires_a_bucket_and_keys() {
        let err = Config::from_vars(&vars(&[
            ("SECRET_KEY", KEY),
            ("DEFAULT_FILE_STORAGE", "s3"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
        ]))
        .unwrap_err();
        assert_eq!(err.var, "AWS_STORAGE_BUCKET_NAME");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let config = Config::from_vars(&vars(&[
            ("SECRET_KEY", KEY),
            ("DEFAULT_FILE_STORAGE", "s3"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
            ("AWS_STORAGE_BUCKET_NAME", "media"),
            ("AWS_S3_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ]))
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("very-secret-value"));
        assert!(!debug.contains(KEY));
        assert!(config.s3.as_ref().unwrap().path_style());
    }

    #[test]
    fn unknown_storage_backend_lists_the_choices() {
        let err = Config::from_vars(&vars(&[
            ("SECRET_KEY", KEY),
            ("DEFAULT_FILE_STORAGE", "ftp"),
        ]))
        .unwrap_err();
        assert_eq!(err.var, "DEFAULT_FILE_STORAGE");
        assert!(err.message.contains("filesystem, s3"));
    }

    #[test]
    fn log_format_is_read_as_any_other_choice() {
        assert_eq!(LogFormat::from_vars(&vars(&[])).unwrap(), LogFormat::Text);
        assert_eq!(
            LogFormat::from_vars(&vars(&[("LOG_FORMAT", "JSON")])).unwrap(),
            LogFormat::Json
        );
        let err = LogFormat::from_vars(&vars(&[("LOG_FORMAT", "xml")])).unwrap_err();
        assert!(err.message.contains("text, json"), "{}", err.message);
    }

    #[test]
    fn a_development_key_is_kept_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(kept_development_key(dir.path()).is_none());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
        let key = SecretString::from(KEY.to_owned());
        keep_development_key(&dir.path().join("data"), &key).unwrap();
        let kept = kept_development_key(&dir.path().join("data")).unwrap();
        assert_eq!(kept.expose_secret(), KEY);
    }
}
