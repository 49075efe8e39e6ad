//! Media for a staging instance: copy every object the database references from live storage
//! (read with a read-only key) into this instance's storage, and audit that nothing is lost.
//!
//! A copy is resumable: both sides are listed once, and an object already in staging with the
//! same size and ETag (or, where the destination has no ETag of its own, the same MD5, or the
//! source's ETag kept in its metadata) is skipped. Each object is written only once complete
//! (the storages' temporary file + rename, single PUT or aborted multipart upload), so a run
//! killed at any point leaves no truncated object and the next run finishes the job.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use md5::Md5;

use crate::db::MediaRef;
use crate::media::keys::{AVATARS, RESUMES};
use crate::storage::{ObjectInfo, SaveOptions, Storage, StorageError, digest_of};

/// User metadata under which a copy keeps its source's ETag.
pub const SOURCE_ETAG: &str = "source-etag";

/// A pair of media storages: avatars (`public`) and resumes (`private`).
#[derive(Debug, Clone)]
pub struct MediaStorages {
    pub public: Arc<dyn Storage>,
    pub private: Arc<dyn Storage>,
}

impl MediaStorages {
    pub(crate) fn of(&self, reference: &MediaRef) -> &dyn Storage {
        if reference.is_private() {
            self.private.as_ref()
        } else {
            self.public.as_ref()
        }
    }

    /// Every object under the media prefixes, by key: avatars of `public`, resumes of
    /// `private`.
    async fn listing(&self) -> Result<(Listing, Listing), StorageError> {
        let (public, private) =
            futures_util::try_join!(self.public.list(AVATARS), self.private.list(RESUMES))?;
        Ok((Listing::from(public), Listing::from(private)))
    }
}

struct Listing(HashMap<String, ObjectInfo>);

impl From<Vec<ObjectInfo>> for Listing {
    fn from(objects: Vec<ObjectInfo>) -> Self {
        Self(objects.into_iter().map(|o| (o.key.clone(), o)).collect())
    }
}

#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Objects copied at once.
    pub jobs: usize,
    /// Copy with S3 CopyObject (the destination's key must read live) instead of streaming
    /// through this process.
    pub server_side: bool,
    /// List what would be copied; copy nothing.
    pub dry_run: bool,
    /// How long one object's copy (all its attempts) may take.
    pub object_timeout: Duration,
    /// Attempts per object for a failure that may pass (throttling, 5xx, a dropped connection).
    pub attempts: u32,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            jobs: 16,
            server_side: false,
            dry_run: false,
            object_timeout: Duration::from_secs(300),
            attempts: 4,
        }
    }
}

/// A reference whose object could not be copied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    #[serde(flatten)]
    pub reference: MediaRef,
    pub error: String,
}

/// What a copy did (or, dry, would do).
#[derive(Debug, Default)]
pub struct CopyReport {
    pub copied: usize,
    pub skipped: usize,
    pub failed: Vec<Failure>,
    /// Bytes copied (dry run: to copy).
    pub bytes: u64,
    /// Dry run: the references that would be copied.
    pub to_copy: Vec<MediaRef>,
}

/// Told how a copy goes, for a progress display.
pub trait CopyProgress: Sync {
    /// `objects` objects, `bytes` in all, are about to be copied.
    fn start(&self, objects: usize, bytes: u64) {
        let _ = (objects, bytes);
    }
    /// One object's copy ended, well (`Some(size)`) or not.
    fn finished(&self, copied: Option<u64>) {
        let _ = copied;
    }
}

impl CopyProgress for () {}

/// Copies the objects of `references` from `live` into `staging`.
pub async fn copy_media(
    references: &[MediaRef],
    live: &MediaStorages,
    staging: &MediaStorages,
    options: &CopyOptions,
    progress: &dyn CopyProgress,
) -> anyhow::Result<CopyReport> {
    // Both sides listed at once: on a re-run, listing is most of the work.
    let (live_listing, staging_listing) = tokio::join!(live.listing(), staging.listing());
    let (live_public, live_private) = live_listing.map_err(|e| {
        anyhow::anyhow!("listing the live storage (LIVE_AWS_STORAGE_BUCKET_NAME): {e}")
    })?;
    let (staging_public, staging_private) =
        staging_listing.map_err(|e| anyhow::anyhow!("listing this instance's storage: {e}"))?;

    let mut report = CopyReport::default();
    let mut seen = HashSet::new();
    // References whose object is in staging already, to compare; the rest are to copy.
    let mut to_compare: Vec<(&MediaRef, &ObjectInfo, &ObjectInfo)> = Vec::new();
    let mut to_copy: Vec<(&MediaRef, u64)> = Vec::new();
    for reference in references {
        if !seen.insert((reference.is_private(), reference.key.as_str())) {
            continue; // two rows, one object
        }
        let (source, destination) = if reference.is_private() {
            (&live_private, &staging_private)
        } else {
            (&live_public, &staging_public)
        };
        let Some(source) = source.0.get(&reference.key) else {
            report.failed.push(Failure {
                reference: reference.clone(),
                error: "missing from the live storage".into(),
            });
            continue;
        };
        match destination.0.get(&reference.key) {
            Some(there) => to_compare.push((reference, source, there)),
            None => to_copy.push((reference, source.size)),
        }
    }
    // Comparing may take a HEAD on each side (servers whose listings carry no ETag): as many
    // at once as copies.
    let compared: Vec<(&MediaRef, u64, bool)> = futures_util::stream::iter(to_compare)
        .map(|(reference, source, there)| async move {
            let same =
                already_copied(source, live.of(reference), there, staging.of(reference)).await;
            (reference, source.size, same)
        })
        .buffer_unordered(options.jobs.max(1))
        .collect()
        .await;
    for (reference, size, same) in compared {
        if same {
            report.skipped += 1;
        } else {
            to_copy.push((reference, size));
        }
    }
    to_copy.sort_by_key(|(reference, _)| (reference.row_id, reference.field));

    if options.dry_run {
        report.bytes = to_copy.iter().map(|(_, size)| size).sum();
        report.to_copy = to_copy.into_iter().map(|(r, _)| r.clone()).collect();
        return Ok(report);
    }
    progress.start(to_copy.len(), to_copy.iter().map(|(_, size)| size).sum());
    let results: Vec<(&MediaRef, Result<u64, String>)> = futures_util::stream::iter(to_copy)
        .map(|(reference, _)| async move {
            let result = copy_with_retries(reference, live, staging, options).await;
            progress.finished(result.as_ref().ok().copied());
            (reference, result)
        })
        .buffer_unordered(options.jobs.max(1))
        .collect()
        .await;
    for (reference, result) in results {
        match result {
            Ok(size) => {
                report.copied += 1;
                report.bytes += size;
            }
            Err(error) => report.failed.push(Failure {
                reference: reference.clone(),
                error,
            }),
        }
    }
    report.failed.sort_by(|a, b| {
        (a.reference.row_id, a.reference.field).cmp(&(b.reference.row_id, b.reference.field))
    });
    Ok(report)
}

/// Whether `there` (in staging) is already a complete copy of `source` (in live).
async fn already_copied(
    source: &ObjectInfo,
    live: &dyn Storage,
    there: &ObjectInfo,
    staging: &dyn Storage,
) -> bool {
    if source.size != there.size {
        return false;
    }
    // Some servers leave ETags out of listings; ask for this one.
    let source_etag = match &source.etag {
        Some(etag) => Some(etag.clone()),
        None => live.head(&source.key).await.ok().and_then(|meta| meta.etag),
    };
    let Some(source_etag) = &source_etag else {
        return true; // nothing more to compare
    };
    if there.etag.as_ref() == Some(source_etag) {
        return true;
    }
    let Ok(meta) = staging.head(&there.key).await else {
        return false;
    };
    match &meta.etag {
        // An S3 copy whose ETag differs (sent in parts) kept the source's in its metadata.
        Some(etag) => etag == source_etag || meta.metadata.get(SOURCE_ETAG) == Some(source_etag),
        // No ETag (the filesystem): a single-part source's ETag is its MD5.
        None if is_md5(source_etag) => md5_of(staging, &there.key)
            .await
            .is_some_and(|digest| &digest == source_etag),
        None => true,
    }
}

fn is_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn md5_of(storage: &dyn Storage, key: &str) -> Option<String> {
    let (digest, _) = digest_of::<Md5>(storage, key).await.ok()?;
    Some(hex::encode(digest))
}

/// Copies one object, retrying what may pass with exponential backoff, within the object's
/// time limit. Returns its size.
async fn copy_with_retries(
    reference: &MediaRef,
    live: &MediaStorages,
    staging: &MediaStorages,
    options: &CopyOptions,
) -> Result<u64, String> {
    let (source, destination) = (live.of(reference), staging.of(reference));
    let attempts = async {
        let mut attempt = 1;
        loop {
            let result = if options.server_side {
                destination
                    .copy_from(source, &reference.key, &reference.key)
                    .await
            } else {
                copy_one(source, destination, &reference.key).await
            };
            match result {
                Ok(size) => return Ok(size),
                Err(StorageError::NotFound(_)) => {
                    return Err("missing from the live storage".to_owned());
                }
                Err(e) if attempt >= options.attempts || !may_pass(&e) => {
                    return Err(e.to_string());
                }
                Err(e) => {
                    let backoff = Duration::from_millis(200 * 2u64.pow(attempt - 1));
                    let jitter = Duration::from_millis(rand::random::<u64>() % 100);
                    tracing::debug!(key = %reference.key, attempt, error = %e, "retrying a copy");
                    tokio::time::sleep(backoff + jitter).await;
                    attempt += 1;
                }
            }
        }
    };
    match tokio::time::timeout(options.object_timeout, attempts).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "timed out after {} s",
            options.object_timeout.as_secs()
        )),
    }
}

fn may_pass(err: &StorageError) -> bool {
    matches!(err, StorageError::Unavailable(_) | StorageError::Io(_))
}

/// Streams one object from `source` into `destination`, keeping its `Content-Type`,
/// `Cache-Control` and `Content-Disposition`, and its ETag as metadata.
async fn copy_one(
    source: &dyn Storage,
    destination: &dyn Storage,
    key: &str,
) -> Result<u64, StorageError> {
    let object = source.open(key).await?;
    let size = object.size;
    let options = SaveOptions {
        content_type: object.content_type,
        cache_control: object.cache_control,
        content_disposition: object.content_disposition,
        metadata: object
            .etag
            .map(|etag| BTreeMap::from([(SOURCE_ETAG.to_owned(), etag)]))
            .unwrap_or_default(),
    };
    destination.save(key, object.body, &options).await?;
    Ok(size)
}

/// What `check-media` found.
#[derive(Debug, Default)]
pub struct Audit {
    /// References whose object is missing.
    pub dangling: Vec<MediaRef>,
    /// Objects under `avatars/` (public) or `resumes/` (private) that no row references and no
    /// pending direct upload names: (`public` | `private`, key).
    pub orphans: Vec<(&'static str, String)>,
    /// Objects of deleted accounts still in storage, recorded to be deleted (see
    /// [`crate::media::retry_pending_deletions`]): (`public` | `private`, key).
    pub pending_deletion: Vec<(&'static str, String)>,
}

/// What besides the references may be in storage for a while.
#[derive(Debug, Default)]
pub struct Expected<'a> {
    /// Keys of direct uploads issued and not yet swept (private storage).
    pub direct_uploads: &'a [String],
    /// Objects of deleted accounts not yet deleted: (private?, key).
    pub deletions: &'a [(bool, String)],
}

/// Compares the references with what the storages hold (one listing of each).
pub async fn check_media(
    references: &[MediaRef],
    expected: &Expected<'_>,
    storages: &MediaStorages,
) -> Result<Audit, StorageError> {
    let (public, private) = storages.listing().await?;
    let mut audit = Audit::default();
    let mut referenced: HashSet<(bool, &str)> = HashSet::new();
    for reference in references {
        referenced.insert((reference.is_private(), &reference.key));
        let listing = if reference.is_private() {
            &private
        } else {
            &public
        };
        if !listing.0.contains_key(&reference.key) {
            audit.dangling.push(reference.clone());
        }
    }
    for (private, name, listing) in [(false, "public", &public), (true, "private", &private)] {
        let mut keys: Vec<&String> = listing
            .0
            .keys()
            .filter(|key| !referenced.contains(&(private, key.as_str())))
            .filter(|key| !(private && expected.direct_uploads.contains(key)))
            .collect();
        keys.sort();
        for key in keys {
            let deleting = expected
                .deletions
                .iter()
                .any(|(p, k)| *p == private && k == key);
            if deleting {
                audit.pending_deletion.push((name, key.clone()));
            } else {
                audit.orphans.push((name, key.clone()));
            }
        }
    }
    Ok(audit)
}
