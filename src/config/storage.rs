//! The file storages: `DEFAULT_FILE_STORAGE`, `MEDIA_ROOT`, `MEDIA_URL`,
//! `AWS_QUERYSTRING_EXPIRE`, `MEDIA_CACHE_CONTROL`, `ASSETS_PREFIX`; `STATICFILES_STORAGE`,
//! `STATIC_ROOT`, `STATIC_URL`; and S3's, named as django-storages names them:
//! `AWS_STORAGE_BUCKET_NAME`, `AWS_PRIVATE_STORAGE_BUCKET_NAME`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_S3_REGION_NAME`, `AWS_S3_ENDPOINT_URL`,
//! `AWS_S3_ADDRESSING_STYLE`, `AWS_DEFAULT_ACL`, `AWS_S3_CUSTOM_DOMAIN`, and the static
//! storage's `STATIC_AWS_*` in place of theirs.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::{ConfigError, StorageBackend, Vars, header_value, one_of, parse, required};

/// How S3 URLs name the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressingStyle {
    /// Path style with a custom endpoint, virtual-hosted style on AWS.
    Auto,
    Path,
    Virtual,
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

/// A storage's backend, `filesystem` (the default) or `s3`.
fn backend(vars: &dyn Vars, var: &'static str) -> Result<StorageBackend, ConfigError> {
    one_of(
        vars,
        var,
        StorageBackend::Filesystem,
        &[
            ("filesystem", StorageBackend::Filesystem),
            ("s3", StorageBackend::S3),
        ],
    )
}

impl MediaConfig {
    pub(super) fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let backend = backend(vars, "DEFAULT_FILE_STORAGE")?;
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
        Ok(Self {
            backend,
            root: vars
                .get("MEDIA_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("data/media")),
            url: media_url,
            querystring_expire: Duration::from_secs(expire_secs),
            cache_control: header_value(vars, "MEDIA_CACHE_CONTROL", "max-age=86400")?,
            assets_prefix,
        })
    }
}

/// Where the app serves `static/` and, on the filesystem backend, the collected assets: the
/// default of `STATIC_URL`, and the route (spelled here only).
pub const STATIC_SERVED_AT: &str = "/static/";

/// Where `collectstatic` puts the assets of `static/` and where pages link to them.
#[derive(Debug, Clone)]
pub struct StaticConfig {
    /// `STATICFILES_STORAGE`.
    pub backend: StorageBackend,
    /// `STATIC_ROOT`: the filesystem backend's directory; assets go under `ASSETS_PREFIX` in it.
    pub root: PathBuf,
    /// `STATIC_URL` when set; otherwise [`STATIC_SERVED_AT`] on the filesystem, or the bucket's URL
    /// plus the prefix on S3.
    pub url: Option<String>,
    /// S3 settings of the static storage: the media ones, with `STATIC_AWS_STORAGE_BUCKET_NAME`,
    /// `STATIC_AWS_ACCESS_KEY_ID` and `STATIC_AWS_SECRET_ACCESS_KEY` in place of theirs when set.
    pub s3: Option<S3Config>,
}

impl StaticConfig {
    pub(super) fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let static_backend = backend(vars, "STATICFILES_STORAGE")?;
        Ok(Self {
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
        })
    }
}

/// Keys given in the environment. Without them, the standard AWS credential chain.
#[derive(Clone)]
pub struct S3Keys {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// `AWS_SESSION_TOKEN`, with temporary keys.
    pub session_token: Option<SecretString>,
}

/// S3 settings, present when any storage uses the S3 backend.
#[derive(Clone)]
pub struct S3Config {
    /// `None`: keys from the AWS credential chain (profile, web identity, ECS, EC2).
    pub keys: Option<S3Keys>,
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
            .field(
                "access_key_id",
                &self
                    .keys
                    .as_ref()
                    .map_or("(credential chain)", |k| &k.access_key_id),
            )
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

/// The media S3 variables, with the static storage's own bucket and key pair in their place
/// where those are set (the seed's separate static bucket).
struct StaticOverlay<'a>(&'a dyn Vars);

impl Vars for StaticOverlay<'_> {
    fn get(&self, name: &str) -> Option<String> {
        let own = match name {
            "AWS_STORAGE_BUCKET_NAME" => self.0.get("STATIC_AWS_STORAGE_BUCKET_NAME"),
            "AWS_ACCESS_KEY_ID" => self.0.get("STATIC_AWS_ACCESS_KEY_ID"),
            "AWS_SECRET_ACCESS_KEY" => self.0.get("STATIC_AWS_SECRET_ACCESS_KEY"),
            // A token goes with the keys it was issued with.
            "AWS_SESSION_TOKEN" if self.0.get("STATIC_AWS_ACCESS_KEY_ID").is_some() => {
                return self.0.get("STATIC_AWS_SESSION_TOKEN");
            }
            _ => None,
        };
        own.or_else(|| self.0.get(name))
    }
}

pub(super) fn s3_from_vars(vars: &dyn Vars, why: &str) -> Result<S3Config, ConfigError> {
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
    let keys = match vars.get("AWS_ACCESS_KEY_ID") {
        Some(access_key_id) => Some(S3Keys {
            access_key_id,
            secret_access_key: SecretString::from(required(
                vars,
                "AWS_SECRET_ACCESS_KEY",
                "with AWS_ACCESS_KEY_ID",
            )?),
            session_token: vars.get("AWS_SESSION_TOKEN").map(SecretString::from),
        }),
        None if vars.get("AWS_SECRET_ACCESS_KEY").is_some() => {
            return Err(ConfigError::new(
                "AWS_ACCESS_KEY_ID",
                "is required with AWS_SECRET_ACCESS_KEY (or unset both to use the AWS \
                 credential chain)",
            ));
        }
        None => None,
    };
    Ok(S3Config {
        keys,
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
