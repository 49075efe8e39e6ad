//! Signed `/media/` URLs for the filesystem backend: the same contract as an S3 presigned URL
//! (like Active Storage's Disk service). The app serves a private file only while the
//! HMAC-SHA256 signature, keyed by `SECRET_KEY`, is valid and the expiry has not passed.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a signed URL grants: one path, until `expires`, answered as this download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedGrant {
    /// Path below `MEDIA_URL`, as stored (not percent-encoded).
    pub path: String,
    /// Unix seconds.
    pub expires: u64,
    pub disposition: Option<String>,
    pub content_type: Option<String>,
}

/// Why a signed URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the link's signature is missing or malformed")]
    Malformed,
    #[error("the link's signature does not match")]
    Invalid,
    #[error("the link has expired")]
    Expired,
}

#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UrlSigner([redacted])")
    }
}

impl UrlSigner {
    pub fn new(secret_key: &[u8]) -> Self {
        // A key of its own, so a signature made for one purpose never validates another.
        let mut mac = HmacSha256::new_from_slice(secret_key).expect("HMAC takes keys of any size");
        mac.update(b"stowage.media-url.v1");
        Self {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn mac(&self, grant: &SignedGrant) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any size");
        // Length-prefixed fields: no two different grants produce the same message.
        for field in [
            grant.path.as_str(),
            &grant.expires.to_string(),
            grant.disposition.as_deref().unwrap_or(""),
            grant.content_type.as_deref().unwrap_or(""),
        ] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac
    }

    /// The hex signature of a grant.
    pub fn sign(&self, grant: &SignedGrant) -> String {
        hex::encode(self.mac(grant).finalize().into_bytes())
    }

    /// Checks a signature in constant time, then the expiry.
    pub fn verify(
        &self,
        grant: &SignedGrant,
        signature: &str,
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        let raw = hex::decode(signature).map_err(|_| SignatureError::Malformed)?;
        self.mac(grant)
            .verify_slice(&raw)
            .map_err(|_| SignatureError::Invalid)?;
        if unix_seconds(now) >= grant.expires {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }

    /// The expiry of a grant made now for `ttl`.
    pub fn expiry(now: SystemTime, ttl: Duration) -> u64 {
        unix_seconds(now) + ttl.as_secs().max(1)
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> SignedGrant {
        SignedGrant {
            path: "private/resumes/1/ab.pdf".into(),
            expires: 2_000_000_000,
            disposition: Some("attachment; filename=\"cv.pdf\"".into()),
            content_type: Some("application/pdf".into()),
        }
    }

    #[test]
    fn a_signature_verifies_until_it_expires() {
        let signer = UrlSigner::new(b"k".repeat(32).as_slice());
        let sig = signer.sign(&grant());
        let before = UNIX_EPOCH + Duration::from_secs(1_999_999_999);
        let after = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        assert_eq!(signer.verify(&grant(), &sig, before), Ok(()));
        assert_eq!(
            signer.verify(&grant(), &sig, after),
            Err(SignatureError::Expired)
        );
    }

    #[test]
    fn any_edited_field_breaks_the_signature() {
        let signer = UrlSigner::new(b"k".repeat(32).as_slice());
        let sig = signer.sign(&grant());
        let now = UNIX_EPOCH;
        let mut edited = grant();
        edited.expires += 1;
        assert_eq!(
            signer.verify(&edited, &sig, now),
            Err(SignatureError::Invalid)
        );
        let mut edited = grant();
        edited.path = "private/resumes/2/ab.pdf".into();
        assert_eq!(
            signer.verify(&edited, &sig, now),
            Err(SignatureError::Invalid)
        );
        let mut edited = grant();
        edited.content_type = Some("text/html".into());
        assert_eq!(
            signer.verify(&edited, &sig, now),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.verify(&grant(), "zz", now),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn another_secret_key_does_not_verify() {
        let a = UrlSigner::new(b"a".repeat(32).as_slice());
        let b = UrlSigner::new(b"b".repeat(32).as_slice());
        assert_eq!(
            b.verify(&grant(), &a.sign(&grant()), UNIX_EPOCH),
            Err(SignatureError::Invalid)
        );
    }
}
