//! Members' files end to end: a checked file is stored under a fresh server-generated key, the
//! profile is pointed at it, and only then is the object it replaced deleted. A failed storage
//! write leaves the database unchanged and nothing half-written; a failed database write
//! deletes the new object; a profile never points at a missing object. The web forms and
//! `seed-demo` both store files through here.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::Stream;

use crate::db::{Database, DbError};
use crate::storage::{SaveOptions, Storage, StorageError, Storages, random_name};
use crate::uploads::{PdfCheck, UploadError, process_avatar};

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
    #[error("the image processing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Checks, re-encodes and stores an avatar (at most `max_bytes`); returns its key.
pub async fn store_avatar(
    db: &Database,
    storages: &Storages,
    profile_id: i64,
    bytes: Vec<u8>,
    max_bytes: u64,
) -> Result<String, StoreError> {
    let avatar = tokio::task::spawn_blocking(move || process_avatar(&bytes, max_bytes)).await??;
    let key = format!(
        "avatars/{profile_id}/{}.{}",
        random_name(),
        avatar.extension
    );
    let size = avatar.bytes.len() as i64;
    let body = futures_util::stream::iter([Ok(Bytes::from(avatar.bytes))]);
    let options = SaveOptions {
        content_type: Some(avatar.content_type.into()),
        cache_control: None,
    };
    let storage = storages.public.as_ref();
    storage.save(&key, Box::pin(body), &options).await?;
    let update = db.set_avatar(profile_id, &key, avatar.content_type, size);
    point_at(storage, &key, update).await?;
    Ok(key)
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
    let key = format!("resumes/{profile_id}/{}.pdf", random_name());
    let size = Arc::new(AtomicU64::new(0));
    let checked = PdfCheck::new(max_bytes, size.clone()).wrap(body);
    let options = SaveOptions {
        content_type: Some("application/pdf".into()),
        cache_control: None,
    };
    let storage = storages.private.as_ref();
    match storage.save(&key, Box::pin(checked), &options).await {
        Ok(_) => {}
        Err(StorageError::Io(e)) => {
            return Err(match UploadError::from_io(&e) {
                Some(refusal) => refusal.into(),
                None => StoreError::Interrupted(e),
            });
        }
        Err(e) => return Err(e.into()),
    }
    let size = size.load(Ordering::Acquire) as i64;
    let update = db.set_resume(profile_id, &key, filename, size);
    point_at(storage, &key, update).await?;
    Ok(key)
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

/// Runs the database `update` that points a profile at the stored `key`. On failure the new
/// object is deleted; on success the object it replaced is.
async fn point_at(
    storage: &dyn Storage,
    key: &str,
    update: impl Future<Output = Result<Option<String>, DbError>>,
) -> Result<(), DbError> {
    match update.await {
        Ok(replaced) => {
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
