//! `stowage doctor`: what an operator runs after configuring, Django's `check --deploy` for
//! storage. Every check does what the app will do, with the keys it will do it with: probe
//! objects are written, read, fetched over HTTP as a browser would (unsigned, signed, through
//! the public URL, a CORS preflight) and deleted. A failed check comes with the exact fix: the
//! variable, the bucket policy, the CORS rule or the IAM statement (`doctor/fixes.rs`).
//!
//! Probes live under [`PROBE_PREFIX`] (`avatars/stowage-doctor/` for public media, so that a
//! bucket policy on `avatars/*` covers them) and are deleted at once.

mod fixes;

use std::time::{Duration, SystemTime};

use crate::config::{Config, DirectUploadMethod, LiveConfig, StorageBackend};
use crate::db::Database;
use crate::media::keys::{AVATARS, beside_avatars};
use crate::storage::{
    SaveOptions, SignedUrlOptions, Storage, StorageError, Storages, random_name, read_to_end,
};
use fixes::{answer_fix, cors_fix, key_fix, live_fix, presign_fix, private_fix, public_fix};

/// The reserved prefix of probe objects.
pub const PROBE_PREFIX: &str = "stowage-doctor";

/// The most the clocks of the host and the store may differ: S3 refuses signatures made more
/// than 15 minutes off, and presigned URLs would expire early or late.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// One check: what was checked, whether it held, and how to fix it when it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub what: String,
    /// The fix, possibly several lines (a JSON policy); only for a failed check.
    pub fix: Option<String>,
}

impl Check {
    fn pass(what: impl Into<String>) -> Self {
        Self {
            ok: true,
            what: what.into(),
            fix: None,
        }
    }

    fn fail(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            ok: false,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What the storage is for, which decides what is checked and the fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Avatars: readable by anyone at their public URL.
    Media,
    /// Resumes: only with a signature.
    Private,
    /// Collected assets: written by `collectstatic` (the static key), readable by anyone.
    Static,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Media => "media",
            Role::Private => "private",
            Role::Static => "static",
        }
    }

    /// A probe key where this storage's real objects go: a fresh one, or for the static
    /// storage always the same, since the static key may write but not delete (each run then
    /// overwrites the one probe left behind).
    fn probe_key(self) -> String {
        match self {
            Role::Media => beside_avatars(&format!("{PROBE_PREFIX}/{}.txt", random_name())),
            Role::Private => format!("{PROBE_PREFIX}/{}.txt", random_name()),
            Role::Static => format!("{PROBE_PREFIX}/probe.txt"),
        }
    }
}

/// Runs every check that the configuration calls for. `origin` is the site's origin
/// (`https://your-site.example`), for the CORS preflight of direct uploads.
pub async fn diagnose(
    config: &Config,
    live: Option<&LiveConfig>,
    origin: Option<&str>,
) -> Vec<Check> {
    let mut doctor = Doctor::new();
    doctor.database(config).await;
    let storages = Storages::from_config(config);
    for (role, storage) in [
        (Role::Media, &storages.public),
        (Role::Private, &storages.private),
        (Role::Static, &storages.static_files),
    ] {
        doctor.storage(config, role, storage.as_ref()).await;
    }
    if let Some(direct) = storages.private.direct_uploads() {
        let method = config.uploads.direct_upload_method;
        doctor.cors(direct.upload_url(), method, origin).await;
    }
    if let Some(s3) = live.and_then(|live| live.s3.as_ref()) {
        let (public, private) = Storages::s3_media(s3, None);
        let private_bucket = s3.private_bucket.clone();
        doctor
            .live("media", &public, &s3.bucket, &private_bucket)
            .await;
        if private_bucket.is_some() {
            doctor
                .live("private", &private, &s3.bucket, &private_bucket)
                .await;
        }
    }
    doctor.clock(config);
    doctor.checks
}

struct Doctor {
    http: reqwest::Client,
    checks: Vec<Check>,
    /// The `Date` of every answer from a store, for the clock check.
    store_dates: Vec<SystemTime>,
}

impl Doctor {
    fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client without custom TLS settings builds");
        Self {
            http,
            checks: Vec::new(),
            store_dates: Vec::new(),
        }
    }

    async fn database(&mut self, config: &Config) {
        let db = match Database::open(&config.database).await {
            Ok(db) => db,
            Err(e) => {
                self.checks.push(Check::fail(
                    format!("database: cannot connect: {e}"),
                    "Check DATABASE_URL, and that the database server is running and reachable.",
                ));
                return;
            }
        };
        match db.pending_migrations().await {
            Ok(0) => self
                .checks
                .push(Check::pass("database: reachable, every migration applied")),
            Ok(pending) => self.checks.push(Check::fail(
                format!("database: reachable, but {pending} migration(s) not applied"),
                "Run `stowage migrate` (the release phase does: Procfile, heroku.yml).",
            )),
            Err(e) => self.checks.push(Check::fail(
                format!("database: cannot read its migrations: {e}"),
                "Check that DATABASE_URL's user may read the database.",
            )),
        }
        db.close().await;
    }

    /// The checks of one storage: it answers; its key can put, read and delete; and, on S3,
    /// what a browser gets at its URLs.
    async fn storage(&mut self, config: &Config, role: Role, storage: &dyn Storage) {
        let label = format!("{} storage ({})", role.name(), storage.base_url());
        let s3 = is_s3(config, role);
        if let Err(e) = storage.ping().await {
            self.checks.push(Check::fail(
                format!("{label}: does not answer: {e}"),
                answer_fix(config, role),
            ));
            return;
        }
        self.checks.push(Check::pass(format!("{label}: answers")));
        // The probe is written once: read back, fetched as a browser would (on S3), deleted.
        let key = role.probe_key();
        let body = format!("stowage doctor probe {key}\n").into_bytes();
        if let Err(e) = put_and_read(storage, &key, &body).await {
            self.checks.push(Check::fail(
                format!("{label}: the key cannot put, read and delete {key}: {e}"),
                key_fix(config, role),
            ));
            if let Err(e) = storage.delete(&key).await {
                tracing::debug!(storage.key = %key, error = %e, "could not delete the doctor's probe");
            }
            return;
        }
        if s3 {
            match role {
                Role::Private => {
                    self.private_reads(config, &label, storage, &key, &body)
                        .await;
                }
                Role::Media | Role::Static => {
                    self.public_reads(config, role, &label, storage, &key, &body)
                        .await;
                }
            }
        }
        match delete_probe(storage, &key, role).await {
            Ok(()) => self.checks.push(Check::pass(format!(
                "{label}: the key can put, read and delete a probe under {PROBE_PREFIX}/"
            ))),
            Err(e) => self.checks.push(Check::fail(
                format!("{label}: the key cannot put, read and delete {key}: {e}"),
                key_fix(config, role),
            )),
        }
    }

    /// A private object: refused without a signature, served with one.
    async fn private_reads(
        &mut self,
        config: &Config,
        label: &str,
        storage: &dyn Storage,
        key: &str,
        body: &[u8],
    ) {
        let unsigned = format!("{}{}", storage.base_url(), encode_key(key));
        match self.get(&unsigned).await {
            Ok((status, _)) if status.is_client_error() => self.checks.push(Check::pass(format!(
                "{label}: objects are refused without a signature ({status})"
            ))),
            Ok((status, _)) => self.checks.push(Check::fail(
                format!("{label}: an object was served without a signature ({status})"),
                private_fix(config),
            )),
            Err(e) => self.checks.push(Check::fail(
                format!("{label}: {unsigned} did not answer: {e}"),
                answer_fix(config, Role::Private),
            )),
        }
        let options = SignedUrlOptions {
            ttl: Duration::from_secs(60),
            download_filename: Some("probe.txt".into()),
            content_type: None,
        };
        let signed = match storage.signed_url(key, &options) {
            Ok(url) => url,
            Err(e) => {
                self.checks.push(Check::fail(
                    format!("{label}: no signed URL could be made: {e}"),
                    key_fix(config, Role::Private),
                ));
                return;
            }
        };
        match self.get(&signed).await {
            Ok((status, bytes)) if status.is_success() && bytes == body => self.checks.push(
                Check::pass(format!("{label}: a presigned URL serves the object")),
            ),
            Ok((status, _)) => self.checks.push(Check::fail(
                format!("{label}: a presigned URL was refused ({status})"),
                presign_fix(config),
            )),
            Err(e) => self.checks.push(Check::fail(
                format!("{label}: a presigned URL did not answer: {e}"),
                answer_fix(config, Role::Private),
            )),
        }
    }

    /// A public object: served to anyone at the URL the pages link.
    async fn public_reads(
        &mut self,
        config: &Config,
        role: Role,
        label: &str,
        storage: &dyn Storage,
        key: &str,
        body: &[u8],
    ) {
        let url = match storage.url(key) {
            Ok(url) => url,
            Err(e) => {
                self.checks.push(Check::fail(
                    format!("{label}: no public URL: {e}"),
                    public_fix(config, role),
                ));
                return;
            }
        };
        let what = match role {
            Role::Media => "avatars",
            _ => "assets",
        };
        match self.get(&url).await {
            Ok((status, bytes)) if status.is_success() && bytes == body => self.checks.push(
                Check::pass(format!("{label}: {what} are readable by anyone at {url}")),
            ),
            Ok((status, _)) => self.checks.push(Check::fail(
                format!("{label}: {url}, as the pages link {what}, answered {status}"),
                public_fix(config, role),
            )),
            Err(e) => self.checks.push(Check::fail(
                format!("{label}: {url}, as the pages link {what}, did not answer: {e}"),
                public_fix(config, role),
            )),
        }
    }

    /// The preflight a browser makes before it sends a resume straight to the bucket.
    async fn cors(&mut self, upload_url: &str, method: DirectUploadMethod, origin: Option<&str>) {
        let label = format!("direct uploads ({upload_url})");
        let (method_name, target) = match method {
            DirectUploadMethod::Post => ("POST", upload_url.to_owned()),
            DirectUploadMethod::Put => (
                "PUT",
                format!("{upload_url}/{PROBE_PREFIX}/{}.pdf", random_name()),
            ),
        };
        let Some(origin) = origin else {
            self.checks.push(Check::fail(
                format!("{label}: the bucket's CORS rule was not checked"),
                "Run `stowage doctor --origin https://your-site.example` with the site's origin.",
            ));
            return;
        };
        let origin = origin.trim_end_matches('/');
        let mut request = self
            .http
            .request(reqwest::Method::OPTIONS, &target)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method_name);
        if method == DirectUploadMethod::Put {
            request = request.header(
                "Access-Control-Request-Headers",
                "content-type,x-amz-checksum-sha256",
            );
        }
        let admitted = match request.send().await.map_err(causes) {
            Ok(response) => {
                self.note_date(&response);
                let allowed = response
                    .headers()
                    .get("access-control-allow-origin")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v == origin || v == "*");
                let methods = response
                    .headers()
                    .get("access-control-allow-methods")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.split(',').any(|m| m.trim() == method_name));
                Ok(response.status().is_success() && allowed && methods)
            }
            Err(e) => Err(e),
        };
        match admitted {
            Ok(true) => self.checks.push(Check::pass(format!(
                "{label}: the CORS rule admits {method_name} from {origin}"
            ))),
            Ok(false) => self.checks.push(Check::fail(
                format!(
                    "{label}: the bucket's CORS rule does not admit {method_name} from {origin}"
                ),
                cors_fix(origin),
            )),
            Err(e) => self.checks.push(Check::fail(
                format!("{label}: the preflight did not answer: {e}"),
                cors_fix(origin),
            )),
        }
    }

    /// The live read-only key: it can read (and list, as `copy-media` does) `bucket`, and
    /// cannot write.
    async fn live(
        &mut self,
        name: &str,
        storage: &std::sync::Arc<dyn Storage>,
        bucket: &str,
        private_bucket: &Option<String>,
    ) {
        let label = format!("live {name} storage ({})", storage.base_url());
        let fix = live_fix(bucket, private_bucket.as_deref());
        match storage.exists(PROBE_PREFIX).await {
            Ok(_) => self
                .checks
                .push(Check::pass(format!("{label}: the read-only key can read"))),
            Err(e) => {
                self.checks.push(Check::fail(
                    format!("{label}: the read-only key cannot read: {e}"),
                    fix,
                ));
                return;
            }
        }
        let key = Role::Private.probe_key();
        match save(
            storage.as_ref(),
            &key,
            b"stowage doctor: this key must not write\n",
        )
        .await
        {
            Err(StorageError::Refused(_)) => self.checks.push(Check::pass(format!(
                "{label}: the read-only key cannot write"
            ))),
            Ok(()) => {
                if let Err(e) = storage.delete(&key).await {
                    tracing::warn!(storage.key = %key, error = %e, "could not delete the doctor's probe from live");
                }
                self.checks.push(Check::fail(
                    format!("{label}: the read-only key could write {key} to live"),
                    fix,
                ));
            }
            Err(e) => self.checks.push(Check::fail(
                format!("{label}: a write could not be tried: {e}"),
                fix,
            )),
        }
    }

    /// The host's clock against the stores' (the `Date` of their answers).
    fn clock(&mut self, config: &Config) {
        let on_s3 = config.media.backend == StorageBackend::S3
            || config.statics.backend == StorageBackend::S3;
        if !on_s3 {
            return;
        }
        let now = SystemTime::now();
        let worst = self
            .store_dates
            .iter()
            .map(|date| now.duration_since(*date).unwrap_or_else(|e| e.duration()))
            .max();
        match worst {
            Some(skew) if skew <= MAX_CLOCK_SKEW => self.checks.push(Check::pass(format!(
                "clock: within {} s of the store's",
                skew.as_secs().max(1)
            ))),
            Some(skew) => self.checks.push(Check::fail(
                format!("clock: {} s off the store's", skew.as_secs()),
                "Synchronise this host's clock (NTP: chrony or systemd-timesyncd). S3 refuses \
                 signatures more than 15 minutes off, and presigned URLs expire early or late.",
            )),
            None => self.checks.push(Check::fail(
                "clock: no answer from the store carried its time",
                "Fix the checks above that could not reach the store, then run doctor again.",
            )),
        }
    }

    /// GETs `url` as a browser would (no credentials), noting the store's `Date`.
    async fn get(&mut self, url: &str) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
        let response = self.http.get(url).send().await.map_err(causes)?;
        self.note_date(&response);
        let status = response.status();
        let bytes = response.bytes().await.map_err(causes)?;
        Ok((status, bytes.to_vec()))
    }

    fn note_date(&mut self, response: &reqwest::Response) {
        if let Some(date) = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
        {
            self.store_dates.push(date);
        }
    }
}

/// An HTTP error with its causes ("error sending request" alone says little).
fn causes(err: reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn is_s3(config: &Config, role: Role) -> bool {
    match role {
        Role::Media | Role::Private => config.media.backend == StorageBackend::S3,
        Role::Static => config.statics.backend == StorageBackend::S3,
    }
}

async fn save(storage: &dyn Storage, key: &str, body: &[u8]) -> Result<(), StorageError> {
    let chunk = bytes::Bytes::copy_from_slice(body);
    let stream = futures_util::stream::iter([Ok(chunk)]);
    let options = SaveOptions {
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    storage.save(key, Box::pin(stream), &options).await?;
    Ok(())
}

/// Writes `key` and reads it back.
async fn put_and_read(storage: &dyn Storage, key: &str, body: &[u8]) -> Result<(), String> {
    save(storage, key, body)
        .await
        .map_err(|e| format!("put: {e}"))?;
    let read = read_to_end(storage, key)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if read != body {
        return Err("read: the bytes read back differ from those written".into());
    }
    Ok(())
}

/// Deletes the probe `key`, then makes sure it is gone.
async fn delete_probe(storage: &dyn Storage, key: &str, role: Role) -> Result<(), String> {
    match storage.delete(key).await {
        Ok(()) => {}
        // The static key writes assets and never deletes them (README's policy); its probe is
        // one key, overwritten by the next run.
        Err(StorageError::Refused(_)) if role == Role::Static => return Ok(()),
        Err(e) => return Err(format!("delete: {e}")),
    }
    match storage.exists(key).await {
        Ok(false) => Ok(()),
        Ok(true) => Err("delete: the object is still there".into()),
        Err(e) => Err(format!("delete: {e}")),
    }
}

fn encode_key(key: &str) -> String {
    percent_encoding::utf8_percent_encode(key, crate::storage::URI_PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_keys_sit_under_the_reserved_prefix_where_the_objects_go() {
        assert!(
            Role::Media
                .probe_key()
                .starts_with(&beside_avatars("stowage-doctor/"))
        );
        assert!(Role::Private.probe_key().starts_with("stowage-doctor/"));
        crate::storage::validate_key(&Role::Media.probe_key()).unwrap();
    }

    #[test]
    fn fixes_are_policies_for_the_configured_buckets() {
        let fix = live_fix("live-media", Some("live-private"));
        let json = &fix[fix.find('{').unwrap()..];
        let policy: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            policy["Statement"][0]["Resource"],
            serde_json::json!(["arn:aws:s3:::live-media/*", "arn:aws:s3:::live-private/*"])
        );
        assert!(cors_fix("https://site.example").contains("\"https://site.example\""));
    }

    #[test]
    fn the_client_builds_with_the_tls_of_the_build() {
        Doctor::new();
    }
}
