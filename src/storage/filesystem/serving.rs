//! What a request below `MEDIA_URL` may read on the filesystem backend: public files as they
//! are, private ones only through a valid, unexpired signed URL (the same contract as an S3
//! presigned URL). The web layer asks [`MediaFiles::authorize`] and serves the file it names.

use std::path::PathBuf;
use std::time::SystemTime;

use super::PRIVATE_LOCATION;
use crate::storage::signing::{SignatureError, SignedGrant, UrlSigner};
use crate::storage::validate_key;

/// The files behind `MEDIA_URL` (public and private), and the key their URLs are signed with.
#[derive(Debug, Clone)]
pub struct MediaFiles {
    root: PathBuf,
    signer: UrlSigner,
}

/// A read [`MediaFiles::authorize`] allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRead {
    /// The file to send.
    pub file: PathBuf,
    /// Through a signed URL: never cached, and answered as the download it names.
    pub signed: bool,
    pub disposition: Option<String>,
    pub content_type: Option<String>,
}

/// Why a read was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaRefusal {
    /// Not a path any key could have (traversal, dot files, odd characters).
    #[error("no such file")]
    NotFound,
    /// A private file asked for without a signature.
    #[error("private file without a signature")]
    Private,
    /// A signature that does not match, an edited or repeated parameter.
    #[error("invalid link")]
    Invalid,
    #[error("expired link")]
    Expired,
}

/// The query of a signed URL.
#[derive(Debug, Default)]
struct SignedQuery {
    expires: Option<String>,
    disposition: Option<String>,
    content_type: Option<String>,
    signature: Option<String>,
}

impl SignedQuery {
    fn parse(raw: Option<&str>) -> Result<Self, MediaRefusal> {
        let mut query = Self::default();
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let slot = match &*name {
                "expires" => &mut query.expires,
                "disposition" => &mut query.disposition,
                "content_type" => &mut query.content_type,
                "signature" => &mut query.signature,
                _ => continue,
            };
            // A parameter given twice is an edited link.
            if slot.replace(value.into_owned()).is_some() {
                return Err(MediaRefusal::Invalid);
            }
        }
        Ok(query)
    }
}

impl MediaFiles {
    pub fn new(root: PathBuf, signer: UrlSigner) -> Self {
        Self { root, signer }
    }

    /// Whether `path` (below `MEDIA_URL`, percent-decoded once) may be read with the query
    /// `raw_query` at `now`, and how it is to be answered.
    pub fn authorize(
        &self,
        path: &str,
        raw_query: Option<&str>,
        now: SystemTime,
    ) -> Result<MediaRead, MediaRefusal> {
        // `%2e%2e` arrives as `..` and is refused here, a double-encoded `%252e` arrives as
        // `%2e` and is refused for its `%`.
        if validate_key(path).is_err() || path.split('/').any(|seg| seg.starts_with('.')) {
            return Err(MediaRefusal::NotFound);
        }
        let query = SignedQuery::parse(raw_query)?;
        let file = self.root.join(path);
        let Some(signature) = &query.signature else {
            if path.split('/').next() == Some(PRIVATE_LOCATION) {
                return Err(MediaRefusal::Private);
            }
            return Ok(MediaRead {
                file,
                signed: false,
                disposition: None,
                content_type: None,
            });
        };
        let expires = query
            .expires
            .as_deref()
            .and_then(|e| e.parse::<u64>().ok())
            .ok_or(MediaRefusal::Invalid)?;
        let grant = SignedGrant {
            path: path.to_owned(),
            expires,
            disposition: query.disposition,
            content_type: query.content_type,
        };
        self.signer
            .verify(&grant, signature, now)
            .map_err(|e| match e {
                SignatureError::Expired => MediaRefusal::Expired,
                SignatureError::Invalid | SignatureError::Malformed => MediaRefusal::Invalid,
            })?;
        Ok(MediaRead {
            file,
            signed: true,
            disposition: grant.disposition,
            content_type: grant.content_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::storage::{SignedUrlOptions, Storage, Visibility};

    #[test]
    fn private_files_need_a_valid_unexpired_signature() {
        let root = PathBuf::from("/srv/media");
        let signer = UrlSigner::new(&[9; 32]);
        let files = MediaFiles::new(root.clone(), signer.clone());
        let private = super::super::FileSystemStorage::new(
            &root,
            PRIVATE_LOCATION,
            "/media/",
            Visibility::Private,
            signer,
        );
        let url = private
            .signed_url(
                "resumes/1/a.pdf",
                &SignedUrlOptions {
                    ttl: Duration::from_secs(60),
                    download_filename: Some("cv.pdf".into()),
                    content_type: Some("application/pdf".into()),
                },
            )
            .unwrap();
        let (path, query) = url.trim_start_matches("/media/").split_once('?').unwrap();
        let now = SystemTime::now();
        let read = files.authorize(path, Some(query), now).unwrap();
        assert!(read.signed);
        assert_eq!(read.file, root.join("private/resumes/1/a.pdf"));
        assert_eq!(read.content_type.as_deref(), Some("application/pdf"));
        let later = now + Duration::from_secs(3600);
        assert_eq!(
            files.authorize(path, Some(query), later),
            Err(MediaRefusal::Expired)
        );
        let edited = query.replace("cv.pdf", "cw.pdf");
        assert_eq!(
            files.authorize(path, Some(&edited), now),
            Err(MediaRefusal::Invalid)
        );
        let twice = format!("{query}&expires=1");
        assert_eq!(
            files.authorize(path, Some(&twice), now),
            Err(MediaRefusal::Invalid)
        );
        assert_eq!(files.authorize(path, None, now), Err(MediaRefusal::Private));
        let public = files.authorize("avatars/1/x.png", None, now).unwrap();
        assert!(!public.signed);
        for hostile in [
            "../etc/passwd",
            "avatars/.hidden",
            "a//b",
            "private/%2e%2e/x",
        ] {
            assert_eq!(
                files.authorize(hostile, None, now),
                Err(MediaRefusal::NotFound),
                "{hostile}"
            );
        }
    }
}
