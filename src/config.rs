//! Every environment variable stowage reads, typed, with defaults and validation.
//!
//! Configuration is read once at start-up ([`Config::from_env`]); a bad value stops the process
//! with a message that names the variable. Names follow django-storages where one exists, so a
//! Django team recognises them. Each section has its file, which lists its variables; this
//! one holds what they share (the environment, the secret key, the rules of parsing).

pub mod database;
mod live;
mod security;
pub mod server;
mod storage;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use database::DatabaseConfig;
pub use live::LiveConfig;
pub use security::{DirectUploadMethod, SecurityConfig, UploadConfig};
pub use server::ServerConfig;
use storage::s3_from_vars;
pub use storage::{AddressingStyle, MediaConfig, S3Config, S3Keys, STATIC_SERVED_AT, StaticConfig};

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
    /// How many days the download log keeps an entry; 0 keeps no log.
    pub download_log_days: u32,
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

/// Every environment variable stowage reads, as the README's configuration tables list them:
/// a unit test compares the two, and in debug builds reading a name not listed here panics, so
/// a new variable cannot go undocumented. (`RUST_LOG` is read by the log filter.)
pub const VARIABLES: &[&str] = &[
    "ALLOW_SIGNUP",
    "ASSETS_PREFIX",
    "AVATAR_MAX_BYTES",
    "AVATAR_PROCESSING_CONCURRENCY",
    "AWS_ACCESS_KEY_ID",
    "AWS_DEFAULT_ACL",
    "AWS_PRIVATE_STORAGE_BUCKET_NAME",
    "AWS_QUERYSTRING_EXPIRE",
    "AWS_S3_ADDRESSING_STYLE",
    "AWS_S3_CUSTOM_DOMAIN",
    "AWS_S3_ENDPOINT_URL",
    "AWS_S3_REGION_NAME",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_STORAGE_BUCKET_NAME",
    "CACHE_TTL_SECS",
    "DATABASE_CONNECT_TIMEOUT_SECS",
    "DATABASE_POOL_SIZE",
    "DATABASE_STATEMENT_TIMEOUT_SECS",
    "DATABASE_URL",
    "DEFAULT_FILE_STORAGE",
    "DIRECT_UPLOAD_EXPIRE",
    "DIRECT_UPLOAD_METHOD",
    "DOWNLOAD_LOG_DAYS",
    "EXPORT_CONCURRENCY",
    "FORCE_HTTPS",
    "HOST",
    "LIVE_AWS_PRIVATE_STORAGE_BUCKET_NAME",
    "LIVE_AWS_S3_ENDPOINT_URL",
    "LIVE_AWS_S3_REGION_NAME",
    "LIVE_AWS_STORAGE_BUCKET_NAME",
    "LIVE_DATABASE_URL",
    "LIVE_READ_ONLY_ACCESS_KEY_ID",
    "LIVE_READ_ONLY_SECRET_KEY",
    "LOGIN_ADDRESS_FAILURE_LIMIT",
    "LOGIN_FAILURE_LIMIT",
    "LOGIN_FAILURE_WINDOW_SECS",
    "LOG_FORMAT",
    "MAX_CONNECTIONS",
    "MEDIA_CACHE_CONTROL",
    "MEDIA_ROOT",
    "MEDIA_URL",
    "PASSWORD_HASH_CONCURRENCY",
    "PORT",
    "REQUEST_TIMEOUT_SECS",
    "RESUME_MAX_BYTES",
    "RUST_LOG",
    "SECRET_KEY",
    "SESSION_COOKIE_SECURE",
    "SESSION_IDLE_SECS",
    "SESSION_MAX_AGE_SECS",
    "SHUTDOWN_DRAIN_SECS",
    "SHUTDOWN_GRACE_SECS",
    "SIGNUP_ADDRESS_LIMIT",
    "SITE_URL",
    "STATICFILES_STORAGE",
    "STATIC_AWS_ACCESS_KEY_ID",
    "STATIC_AWS_SECRET_ACCESS_KEY",
    "STATIC_AWS_SESSION_TOKEN",
    "STATIC_AWS_STORAGE_BUCKET_NAME",
    "STATIC_ROOT",
    "STATIC_URL",
    "STOWAGE_ENV",
    "TRUSTED_PROXIES",
    "TRUST_PROXY",
    "UPLOAD_TIMEOUT_SECS",
];

/// A source of variables: the process environment, or a map in tests.
pub trait Vars {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        debug_assert!(
            VARIABLES.contains(&name),
            "{name} is not in config::VARIABLES"
        );
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Vars for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        debug_assert!(
            VARIABLES.contains(&name),
            "{name} is not in config::VARIABLES"
        );
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
        let server = ServerConfig::from_vars(vars)?;
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
        let media = MediaConfig::from_vars(vars)?;
        let s3 = if media.backend == StorageBackend::S3 {
            Some(s3_from_vars(vars, "when DEFAULT_FILE_STORAGE=s3")?)
        } else {
            None
        };
        let statics = StaticConfig::from_vars(vars)?;

        let cache_ttl = Duration::from_secs(parse(vars, "CACHE_TTL_SECS", 5)?);
        let download_log_days: u32 = parse(vars, "DOWNLOAD_LOG_DAYS", 365)?;
        let session_cookie_secure = parse(
            vars,
            "SESSION_COOKIE_SECURE",
            env == Environment::Production,
        )?;

        let uploads = UploadConfig::from_vars(vars, env)?;
        let security = SecurityConfig::from_vars(vars)?;

        LogFormat::from_vars(vars)?;

        Ok(Self {
            env,
            server,
            database,
            cache_ttl,
            download_log_days,
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
    /// For `serve`: in production the site's origin is configured, so that no URL the site
    /// hands out (a share link) is built on a request's `Host` header.
    pub fn require_site_url(self) -> Result<Self, ConfigError> {
        if self.env == Environment::Production && self.server.site_url.is_none() {
            return Err(ConfigError::new(
                "SITE_URL",
                "is required when STOWAGE_ENV=production: share links are built on it, never \
                 on a request's Host header (e.g. https://members.example.org)",
            ));
        }
        Ok(self)
    }

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
    use std::path::PathBuf;

    use super::*;

    /// The README's configuration tables name exactly [`VARIABLES`]: each row's first cell,
    /// every name in backquotes there.
    #[test]
    fn the_readme_documents_every_variable_and_no_other() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("\n## Configuration")
            .expect("a Configuration section");
        let end = start
            + readme[start..]
                .find("\n## Commands")
                .expect("the next section");
        let mut documented: Vec<&str> = readme[start..end]
            .lines()
            .filter_map(|line| line.strip_prefix("| "))
            .filter_map(|row| row.split(" | ").next())
            .flat_map(|cell| cell.split(", "))
            .filter_map(|name| name.strip_prefix('`')?.strip_suffix('`'))
            .filter(|name| {
                name.bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
            })
            .collect();
        documented.sort_unstable();
        let mut read = VARIABLES.to_vec();
        read.sort_unstable();
        assert_eq!(documented, read);
    }

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
        assert!(
            config.server.proxies == server::TrustedProxies::None && !config.server.force_https
        );
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
        assert_eq!(
            config.uploads.direct_upload_method,
            DirectUploadMethod::Post
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
            (
                s3.bucket.as_str(),
                s3.keys.as_ref().unwrap().access_key_id.as_str()
            ),
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
            (
                s3.bucket.as_str(),
                s3.keys.as_ref().unwrap().access_key_id.as_str()
            ),
            ("assets", "static-key")
        );
        assert_eq!(
            s3.keys.as_ref().unwrap().secret_access_key.expose_secret(),
            "static-secret"
        );
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
    fn s3_keys_come_from_the_environment_or_else_the_credential_chain() {
        let base = [
            ("SECRET_KEY", KEY),
            ("DEFAULT_FILE_STORAGE", "s3"),
            ("AWS_STORAGE_BUCKET_NAME", "media"),
        ];
        let chain = Config::from_vars(&vars(&base)).unwrap();
        assert!(chain.s3.unwrap().keys.is_none(), "the credential chain");
        let temporary = [
            ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ];
        let config = Config::from_vars(&vars(&[&base[..], &temporary[..]].concat())).unwrap();
        let keys = config.s3.unwrap().keys.unwrap();
        assert_eq!(keys.access_key_id, "ASIAEXAMPLE");
        assert_eq!(keys.session_token.unwrap().expose_secret(), "token");
        let half = [&base[..], &[("AWS_SECRET_ACCESS_KEY", "secret")]].concat();
        assert_eq!(
            Config::from_vars(&vars(&half)).unwrap_err().var,
            "AWS_ACCESS_KEY_ID"
        );
        let half = [&base[..], &[("AWS_ACCESS_KEY_ID", "AKIA")]].concat();
        assert_eq!(
            Config::from_vars(&vars(&half)).unwrap_err().var,
            "AWS_SECRET_ACCESS_KEY"
        );
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
            (
                s3.bucket.as_str(),
                s3.keys.as_ref().unwrap().access_key_id.as_str()
            ),
            ("live", "ro-key")
        );
        assert_eq!(
            s3.keys.as_ref().unwrap().secret_access_key.expose_secret(),
            "ro-secret"
        );
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
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("TRUSTED_PROXIES", "the router"),
            ("FORCE_HTTPS", "true"),
            ("PASSWORD_HASH_CONCURRENCY", "0"),
            ("LOGIN_FAILURE_LIMIT", "many"),
            ("SESSION_IDLE_SECS", "0"),
            ("DIRECT_UPLOAD_EXPIRE", "7200"),
            ("DIRECT_UPLOAD_METHOD", "patch"),
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
        assert!(config.server.proxies == server::TrustedProxies::Any && config.server.force_https);
    }

    #[test]
    fn site_url_is_an_origin_and_serving_production_requires_it() {
        let site = |value| {
            Config::from_vars(&vars(&[("SECRET_KEY", KEY), ("SITE_URL", value)]))
                .map(|c| c.server.site_url.unwrap())
        };
        assert_eq!(
            site("https://Members.Example.org/").unwrap(),
            "https://members.example.org"
        );
        assert_eq!(
            site("http://127.0.0.1:8000").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            site("https://example.org:443").unwrap(),
            "https://example.org"
        );
        for bad in [
            "members.example.org",
            "ftp://example.org",
            "https://example.org/app",
            "https://example.org/?x=1",
            "https://example.org/#top",
            "https://user@example.org",
            "https://",
        ] {
            assert_eq!(site(bad).unwrap_err().var, "SITE_URL", "{bad}");
        }
        let production = [("SECRET_KEY", KEY), ("STOWAGE_ENV", "production")];
        let err = Config::from_vars(&vars(&production))
            .unwrap()
            .require_site_url()
            .unwrap_err();
        assert_eq!(err.var, "SITE_URL");
        let with_site = [
            ("SECRET_KEY", KEY),
            ("STOWAGE_ENV", "production"),
            ("SITE_URL", "https://members.example.org"),
        ];
        let config = Config::from_vars(&vars(&with_site)).unwrap();
        assert!(config.require_site_url().is_ok());
        // Development builds URLs on the request's origin when it is unset.
        let config = Config::from_vars(&vars(&[("SECRET_KEY", KEY)])).unwrap();
        assert!(config.require_site_url().is_ok());
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
