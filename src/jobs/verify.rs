//! `check-media --verify`: every referenced object is read whole and its SHA-256 compared
//! with the one recorded when it was stored, so an object corrupted, truncated or replaced in
//! the bucket behind the app's back is found. Reads run a few at a time.

use futures_util::StreamExt;

use super::staging::MediaStorages;
use crate::db::MediaRef;
use crate::storage::{Sha256Digest, StorageError, sha256_of};

/// Objects read at once.
const CONCURRENCY: usize = 8;

/// What one reference's object turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its digest is the recorded one.
    Intact,
    /// Another digest than the recorded one.
    Differs {
        recorded: String,
        stored: Sha256Digest,
    },
    /// No digest was recorded (stored before digests were kept).
    Unrecorded,
    /// The object is missing (`check-media` reports it as dangling too).
    Missing,
}

/// The verdict on each reference, in the order given. A storage failure other than a missing
/// object stops the run: a verification that could not read is no verification.
pub async fn verify_media(
    references: &[MediaRef],
    storages: &MediaStorages,
) -> Result<Vec<(MediaRef, Verdict)>, StorageError> {
    let checks = references.iter().map(|reference| async move {
        let Some(recorded) = reference.sha256.clone() else {
            return Ok((reference.clone(), Verdict::Unrecorded));
        };
        let verdict = match sha256_of(storages.of(reference), &reference.key).await {
            Ok((stored, _)) if Sha256Digest::from_hex(&recorded) == Some(stored) => Verdict::Intact,
            Ok((stored, _)) => Verdict::Differs { recorded, stored },
            Err(StorageError::NotFound(_)) => Verdict::Missing,
            Err(e) => return Err(e),
        };
        Ok((reference.clone(), verdict))
    });
    futures_util::stream::iter(checks)
        .buffered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
