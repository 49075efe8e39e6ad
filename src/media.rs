//! Members' files end to end: a checked file is stored under a fresh server-generated key, the
//! profile is pointed at it, and only then is the object it replaced deleted. A failed storage
//! write leaves the database unchanged and nothing half-written; a failed database write
//! deletes the new object; a profile never points at a missing object. The web forms and
//! `seed-demo` both store files through here.
//!
//! A resume may also go straight from the browser to S3 ([`issue_direct_upload`]), so a large
//! file never passes through the app; [`confirm_direct_upload`] then checks what arrived, in
//! storage, as [`PdfCheck`] checks a streamed one, before the profile points at it. The upload
//! is issued for one file, named by its length and SHA-256 (both signed into the request, so a
//! store that checks them refuses anything else), and confirming reads the object whole to
//! compare its digest again, so a store that does not check is covered too. The form stays
//! valid until it expires (`DIRECT_UPLOAD_EXPIRE`, 2 minutes), so whoever holds it could post
//! again after the confirmation: the confirmed object is therefore first copied, inside the
//! storage, to a fresh key no form covers, and it is the copy that is checked and served.
//!
//! Every stored file's SHA-256 is kept with the profile, for `check-media --verify`.

pub mod checks;
pub mod export;
pub mod keys;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use crate::config::DirectUploadMethod;
use crate::db::deletions::PendingDeletion;
use crate::db::{Database, DbError, MediaRef};
use crate::media::checks::{PDF_TRAILER_WINDOW, PdfCheck, UploadError, check_pdf, process_avatar};
use crate::slots::{SlotError, Slots};
use crate::storage::{
    PresignedUpload, SaveOptions, Sha256Digest, Storage, StorageError, Storages, UploadConditions,
    sha256_of,
};

/// How long after it was issued a direct upload may be confirmed (a large file on a slow line
/// may still be arriving when its form expires); after that, what was uploaded is swept.
pub const DIRECT_UPLOAD_CONFIRM_WINDOW: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file itself was refused (type, size, content).
    #[error(transparent)]
    Refused(#[from] UploadError),
    /// The body stopped before it was complete.
    #[error("the upload was interrupted: {0}")]
    Interrupted(std::io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// Decoding the image panicked.
    #[error("the image processing failed")]
    Failed,
    /// Every image-processing slot stayed busy; nothing was decoded.
    #[error("every image processing slot is busy")]
    Busy,
    /// A direct upload to confirm that was not issued to this profile, or has expired.
    #[error("this upload was not issued to this member, or it has expired")]
    NotIssued,
}

impl From<SlotError> for StoreError {
    fn from(err: SlotError) -> Self {
        match err {
            SlotError::Busy => StoreError::Busy,
            SlotError::Failed => StoreError::Failed,
        }
    }
}

/// Checks, re-encodes and stores an avatar (at most `max_bytes`) at each size the pages show;
/// returns the key of its largest. Decoding takes one of `slots` (a 40-megapixel image costs
/// ~280 MB and a second or two of CPU).
///
/// The keys are content-addressed and so immutable (see [`keys`]): a CDN or browser may keep
/// them forever, and the same image uploaded again lands on the same keys.
pub async fn store_avatar(
    db: &Database,
    storages: &Storages,
    slots: &Slots,
    profile_id: i64,
    bytes: Vec<u8>,
    max_bytes: u64,
) -> Result<String, StoreError> {
    let avatar = slots
        .run(move || process_avatar(&bytes, max_bytes))
        .await??;
    let (_, largest) = avatar.sizes.last().ok_or(StoreError::Failed)?;
    let digest = Sha256Digest::of(largest).to_hex();
    let options = SaveOptions {
        content_type: Some(avatar.content_type.into()),
        ..Default::default()
    };
    let storage = storages.public.as_ref();
    let sides = avatar.sides();
    let mut stored = Vec::with_capacity(avatar.sizes.len());
    let mut largest = None;
    for (side, bytes) in avatar.sizes {
        let key = keys::avatar_key(profile_id, &digest, side, avatar.extension);
        let body = futures_util::stream::iter([Ok(Bytes::from(bytes))]);
        match storage.save(&key, Box::pin(body), &options).await {
            Ok(saved) => largest = Some(saved),
            Err(e) => {
                discard_avatar(db, storage, profile_id, &stored).await;
                return Err(e.into());
            }
        }
        stored.push(key);
    }
    let (Some(largest), Some(key)) = (largest, stored.last().cloned()) else {
        return Err(StoreError::Failed);
    };
    let update = db
        .set_avatar(
            profile_id,
            &key,
            Some(&sides),
            avatar.content_type,
            largest.size as i64,
            &largest.sha256.to_hex(),
        )
        .await;
    match update {
        Ok(replaced) => {
            let replaced = replaced
                .map(|(key, sizes)| keys::avatar_keys(&key, sizes.as_deref()))
                .unwrap_or_default();
            for old in replaced.iter().filter(|old| !stored.contains(old)) {
                delete_unreferenced(storage, Some(old)).await;
            }
            Ok(key)
        }
        Err(e) => {
            discard_avatar(db, storage, profile_id, &stored).await;
            Err(e.into())
        }
    }
}

/// Deletes the `keys` an avatar upload stored and could not point the profile at, except
/// those the profile points at already (the same image uploaded again).
async fn discard_avatar(db: &Database, storage: &dyn Storage, profile_id: i64, keys: &[String]) {
    let current = match db.find_profile(profile_id).await {
        Ok(Some(profile)) => avatar_keys_of(&profile),
        Ok(None) => Vec::new(),
        // Not knowing what the profile points at, deleting could leave it dangling: the
        // objects stay, as orphans check-media lists.
        Err(e) => {
            tracing::warn!(error = %e, "could not read the profile to discard an avatar upload");
            return;
        }
    };
    for key in keys.iter().filter(|key| !current.contains(key)) {
        delete_unreferenced(storage, Some(key)).await;
    }
}

/// Every stored key of a profile's avatar.
fn avatar_keys_of(profile: &crate::db::ProfileRow) -> Vec<String> {
    profile
        .avatar_key
        .as_deref()
        .map(|key| keys::avatar_keys(key, profile.avatar_sizes.as_deref()))
        .unwrap_or_default()
}

/// Streams a resume through the PDF check (at most `max_bytes`) into private storage; returns
/// its key. `filename` is the (cleaned) name it downloads as.
pub async fn store_resume<S, E>(
    db: &Database,
    storages: &Storages,
    profile_id: i64,
    body: S,
    filename: &str,
    max_bytes: u64,
) -> Result<String, StoreError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: Into<std::io::Error>,
{
    let key = keys::resume_key(profile_id);
    let checked = PdfCheck::new(max_bytes).wrap(body);
    let options = SaveOptions {
        content_type: Some("application/pdf".into()),
        ..Default::default()
    };
    let storage = storages.private.as_ref();
    let stored = match storage.save(&key, Box::pin(checked), &options).await {
        Ok(stored) => stored,
        Err(StorageError::Io(e)) => {
            return Err(match UploadError::from_io(&e) {
                Some(refusal) => refusal.into(),
                None => StoreError::Interrupted(e),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let sha256 = stored.sha256.to_hex();
    let update = db.set_resume(profile_id, &key, filename, stored.size as i64, &sha256);
    point_at(storage, &key, update).await?;
    Ok(key)
}

/// The one file a direct upload is issued for, as the browser announces it.
#[derive(Debug, Clone, Copy)]
pub struct AnnouncedFile {
    /// Its exact length in bytes.
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// Issues a request (`method`: a POST form or a PUT), valid for `ttl`, that uploads the
/// resume `file` straight to private storage, under a fresh key recorded as issued to
/// `profile_id` for that file. A file over `max_bytes` is refused before anything is issued.
/// Returns the key and the request.
pub async fn issue_direct_upload(
    db: &Database,
    storages: &Storages,
    profile_id: i64,
    file: AnnouncedFile,
    method: DirectUploadMethod,
    max_bytes: u64,
    ttl: Duration,
) -> Result<(String, PresignedUpload), StoreError> {
    if file.size == 0 {
        return Err(UploadError::Empty.into());
    }
    if file.size > max_bytes {
        return Err(UploadError::too_large(max_bytes).into());
    }
    let key = keys::resume_key(profile_id);
    let direct = storages
        .private
        .direct_uploads()
        .ok_or(StorageError::Unsupported("direct uploads"))?;
    let upload = direct.presigned_upload(
        &key,
        method,
        &UploadConditions {
            content_type: "application/pdf".into(),
            size: file.size,
            sha256: file.sha256,
            ttl,
        },
    )?;
    db.issue_direct_upload(profile_id, &key, file.size as i64, &file.sha256.to_hex())
        .await?;
    Ok((key, upload))
}

/// Points `profile_id` at the resume uploaded directly under `key`, once the key is known to
/// have been issued to them and not yet confirmed. The object is copied inside the storage to
/// a fresh key, and that copy must pass the PDF check where it lies (its size, its `%PDF-`
/// head and `startxref … %%EOF` trailer, read with ranged GETs) and then be the file that was
/// announced: its length and, read whole, its SHA-256. The profile then points at the copy
/// and the uploaded object is deleted; a refused copy is deleted with it. Returns the key the
/// profile points at.
pub async fn confirm_direct_upload(
    db: &Database,
    storages: &Storages,
    profile_id: i64,
    key: &str,
    filename: &str,
    max_bytes: u64,
) -> Result<String, StoreError> {
    let since = crate::db::now() - DIRECT_UPLOAD_CONFIRM_WINDOW.as_secs() as i64;
    let Some(issued) = db.direct_upload_issued(profile_id, key, since).await? else {
        return Err(StoreError::NotIssued);
    };
    let announced = issued
        .sha256
        .as_deref()
        .and_then(Sha256Digest::from_hex)
        .zip(issued.size);
    let storage = storages.private.as_ref();
    let fresh = keys::resume_key(profile_id);
    // A storage failure returns with the upload still issued, so it can be confirmed again.
    let checked = match storage.copy_from(storage, key, &fresh).await {
        Ok(_) => match check_stored_resume(storage, &fresh, max_bytes, announced).await {
            Ok(checked) => checked,
            Err(e) => {
                delete_unreferenced(storage, Some(&fresh)).await;
                return Err(e.into());
            }
        },
        Err(StorageError::NotFound(_)) => Err(UploadError::NotReceived),
        Err(e) => return Err(e.into()),
    };
    if !db.claim_direct_upload(profile_id, key).await? {
        delete_unreferenced(storage, Some(&fresh)).await;
        return Err(StoreError::NotIssued);
    }
    // What was posted under the issued key is never served; it goes now, and whatever is
    // posted there again goes with the sweep.
    delete_unreferenced(storage, Some(key)).await;
    match checked {
        Ok((size, sha256)) => {
            let sha256 = sha256.to_hex();
            let update = db.set_resume(profile_id, &fresh, filename, size as i64, &sha256);
            point_at(storage, &fresh, update).await?;
            Ok(fresh)
        }
        Err(refusal) => {
            delete_unreferenced(storage, Some(&fresh)).await;
            Err(refusal.into())
        }
    }
}

/// The checks of a directly uploaded resume where it lies: the PDF check, then the file
/// announced at issue (when the upload was issued with one): the same length and, read
/// whole, the same SHA-256. Its size and digest when it passes.
async fn check_stored_resume(
    storage: &dyn Storage,
    key: &str,
    max_bytes: u64,
    announced: Option<(Sha256Digest, i64)>,
) -> Result<Result<(u64, Sha256Digest), UploadError>, StorageError> {
    let size = match check_stored_pdf(storage, key, max_bytes).await? {
        Ok(size) => size,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if let Some((_, announced_size)) = announced
        && announced_size != size as i64
    {
        return Ok(Err(UploadError::NotAnnounced));
    }
    let (sha256, read) = sha256_of(storage, key).await?;
    if read != size || announced.is_some_and(|(digest, _)| digest != sha256) {
        return Ok(Err(UploadError::NotAnnounced));
    }
    Ok(Ok((size, sha256)))
}

/// The PDF check of an object in storage; its size when it passes.
async fn check_stored_pdf(
    storage: &dyn Storage,
    key: &str,
    max_bytes: u64,
) -> Result<Result<u64, UploadError>, StorageError> {
    let size = match storage.size(key).await {
        Ok(size) => size,
        Err(StorageError::NotFound(_)) => return Ok(Err(UploadError::NotReceived)),
        Err(e) => return Err(e),
    };
    if size == 0 || size > max_bytes {
        return Ok(check_pdf(size, max_bytes, &[], &[]).map(|()| size));
    }
    let head = storage.read_range(key, 0..5).await?;
    let tail_start = size.saturating_sub(PDF_TRAILER_WINDOW as u64);
    let tail = storage.read_range(key, tail_start..size).await?;
    Ok(check_pdf(size, max_bytes, &head, &tail).map(|()| size))
}

/// Deletes whatever sits under the keys of direct uploads issued before `issued_before` (unix
/// seconds; `serve` sweeps every few minutes those older than the confirm window), never
/// confirmed or posted again after their confirmation, and their rows. Best effort: a failure
/// is logged, and an object whose delete failed stays as a logged orphan.
pub async fn sweep_abandoned_direct_uploads(
    db: &Database,
    storages: &Storages,
    issued_before: i64,
) {
    match db.claim_abandoned_direct_uploads(issued_before).await {
        Ok(keys) => {
            for key in keys {
                delete_unreferenced(storages.private.as_ref(), Some(&key)).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not sweep abandoned direct uploads"),
    }
}

/// Removes a profile's resume: the reference first, then the object.
pub async fn delete_resume(
    db: &Database,
    storages: &Storages,
    profile_id: i64,
) -> Result<(), StoreError> {
    let old = db.clear_resume(profile_id).await?;
    delete_unreferenced(storages.private.as_ref(), old.as_deref()).await;
    Ok(())
}

/// Deletes member `user_id`'s account and every object of theirs: the rows at once, in one
/// transaction that also records each object as a pending deletion; then the objects. An
/// object storage would not delete stays pending, and [`retry_pending_deletions`] removes it
/// later. Returns how many objects storage did not delete now, or `None` for no such member.
pub async fn delete_account(
    db: &Database,
    storages: &Storages,
    user_id: i64,
) -> Result<Option<usize>, DbError> {
    let window = DIRECT_UPLOAD_CONFIRM_WINDOW.as_secs() as i64;
    let Some(pending) = db
        .delete_account(user_id, window, keys::avatar_keys)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(run_deletions(db, storages, pending).await))
}

/// Every reference the database holds to a stored object, each size of an avatar its own
/// (see [`Database::media_references`]).
pub async fn references(db: &Database) -> Result<Vec<MediaRef>, DbError> {
    db.media_references(keys::avatar_keys).await
}

/// How many pending deletions one retry takes on.
const DELETION_BATCH: i64 = 500;

/// Deletes the objects of deleted accounts whose (next) attempt is due at `at` (unix seconds);
/// `serve` calls it every few seconds on every instance (deleting twice is harmless). Returns
/// how many are still pending after this round.
pub async fn retry_pending_deletions(db: &Database, storages: &Storages, at: i64) -> usize {
    match db.due_deletions(at, DELETION_BATCH).await {
        Ok(due) => run_deletions(db, storages, due).await,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the pending deletions");
            0
        }
    }
}

/// Deletes each pending object and records the outcome; returns how many failed.
async fn run_deletions(db: &Database, storages: &Storages, pending: Vec<PendingDeletion>) -> usize {
    let mut failed = 0;
    for deletion in pending {
        let storage = if deletion.is_private() {
            storages.private.as_ref()
        } else {
            storages.public.as_ref()
        };
        let recorded = match storage.delete(&deletion.object_key).await {
            Ok(()) | Err(StorageError::NotFound(_)) => db.deletion_done(&deletion).await,
            Err(e) => {
                failed += 1;
                tracing::warn!(
                    storage.key = %deletion.object_key,
                    attempts = deletion.attempts + 1,
                    error = %e,
                    "could not delete an object of a deleted account; it stays pending"
                );
                db.deletion_failed(&deletion).await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(storage.key = %deletion.object_key, error = %e, "could not record a pending deletion's attempt");
        }
    }
    failed
}

/// Runs the database `update` that points a profile at the stored `key`. On failure the new
/// object is deleted; on success the object it replaced is.
async fn point_at(
    storage: &dyn Storage,
    key: &str,
    update: impl Future<Output = Result<Option<String>, DbError>>,
) -> Result<(), DbError> {
    match update.await {
        Ok(replaced) => {
            // The same key again (a repeated confirmation) must not delete the live object.
            let replaced = replaced.filter(|old| old != key);
            delete_unreferenced(storage, replaced.as_deref()).await;
            Ok(())
        }
        Err(e) => {
            delete_unreferenced(storage, Some(key)).await;
            Err(e)
        }
    }
}

/// Deletes an object nothing points at any more; a failure leaves an orphan, never a
/// dangling reference, so it is logged rather than returned.
async fn delete_unreferenced(storage: &dyn Storage, key: Option<&str>) {
    if let Some(key) = key
        && let Err(e) = storage.delete(key).await
    {
        tracing::warn!(storage.key = %key, error = %e, "could not delete an unreferenced object");
    }
}
