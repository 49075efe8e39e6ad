//! SHA-256 digests of stored objects: computed by [`Storage::save`](super::Storage::save) as
//! it writes, signed into direct uploads, kept with the profile, and compared again by
//! `check-media --verify`. Hex in the database and in what operators read (as `sha256sum`
//! prints it); base64 on the wire, as S3's `x-amz-checksum-sha256` carries it.

use std::fmt;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{Result, Storage};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// From 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    /// From standard base64 of the 32 bytes, as S3 writes `x-amz-checksum-sha256`.
    pub fn from_base64(text: &str) -> Option<Self> {
        let bytes = aws_smithy_types::base64::decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn to_base64(self) -> String {
        aws_smithy_types::base64::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

/// A running SHA-256 of the bytes a backend writes.
#[derive(Default)]
pub(crate) struct Hasher(Sha256);

impl Hasher {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> Sha256Digest {
        Sha256Digest(self.0.finalize().into())
    }
}

/// Reads `key` of `storage` whole, as a stream, and returns its `D` digest (SHA-256, MD5…)
/// and size: what is stored, whatever the storage says of it.
pub async fn digest_of<D: Digest>(
    storage: &dyn Storage,
    key: &str,
) -> Result<(sha2::digest::Output<D>, u64)> {
    let mut object = storage.open(key).await?;
    let mut hasher = D::new();
    let mut size = 0u64;
    while let Some(chunk) = object.body.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok((hasher.finalize(), size))
}

/// [`digest_of`] with SHA-256.
pub async fn sha256_of(storage: &dyn Storage, key: &str) -> Result<(Sha256Digest, u64)> {
    let (digest, size) = digest_of::<Sha256>(storage, key).await?;
    Ok((Sha256Digest(digest.into()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_read_back_from_hex_and_base64() {
        let digest = Sha256Digest::of(b"abc");
        assert_eq!(
            digest.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            digest.to_base64(),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        assert_eq!(Sha256Digest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(
            Sha256Digest::from_hex(&digest.to_hex().to_uppercase()),
            Some(digest)
        );
        assert_eq!(Sha256Digest::from_base64(&digest.to_base64()), Some(digest));
        for bad in [
            "",
            "abc",
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIA",
            "%%%%",
        ] {
            assert_eq!(Sha256Digest::from_base64(bad), None, "{bad:?}");
        }
        assert_eq!(Sha256Digest::from_hex(&"g".repeat(64)), None);
    }
}
