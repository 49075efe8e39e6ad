//! The local filesystem backend, for development and single-machine deployments.
//!
//! Files live under `MEDIA_ROOT/{location}/{key}`. Public files are served by the app under
//! `MEDIA_URL`; private ones only through a signed URL (see [`super::signing`]).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use percent_encoding::utf8_percent_encode;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

mod serving;

pub use serving::{MediaFiles, MediaRead, MediaRefusal};

use super::digest::Hasher;
use super::signing::{SignedGrant, UrlSigner};
use super::{
    ByteStream, ObjectInfo, ObjectMeta, Result, SaveOptions, SignedUrlOptions, Storage,
    StorageError, Stored, StoredObject, URI_COMPONENT, URI_PATH, Visibility, content_disposition,
    join_location, validate_key,
};

/// The location of the `private` storage below `MEDIA_ROOT`; never served without a signature.
pub const PRIVATE_LOCATION: &str = "private";

#[derive(Debug, Clone)]
pub struct FileSystemStorage {
    root: PathBuf,
    location: String,
    base_url: String,
    visibility: Visibility,
    signer: UrlSigner,
}

impl FileSystemStorage {
    pub fn new(
        root: &Path,
        location: &str,
        base_url: &str,
        visibility: Visibility,
        signer: UrlSigner,
    ) -> Self {
        Self {
            root: root.to_owned(),
            location: location.trim_matches('/').to_owned(),
            base_url: base_url.to_owned(),
            visibility,
            signer,
        }
    }

    /// The file behind a key, after checking the key cannot escape the root.
    pub fn path(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(join_location(&self.location, key)))
    }

    fn url_path(&self, key: &str) -> String {
        let full = join_location(&self.location, key);
        format!("{}{}", self.base_url, utf8_percent_encode(&full, URI_PATH))
    }
}

/// The filesystem keeps no content type: it is the extension's.
fn guess_type(path: &Path) -> Option<String> {
    mime_guess::from_path(path)
        .first()
        .map(|m| m.essence_str().to_owned())
}

fn not_found(key: &str, err: std::io::Error) -> StorageError {
    if err.kind() == std::io::ErrorKind::NotFound {
        StorageError::NotFound(key.to_owned())
    } else {
        StorageError::Io(err)
    }
}

#[async_trait]
impl Storage for FileSystemStorage {
    async fn save(
        &self,
        key: &str,
        mut body: ByteStream<'_>,
        _options: &SaveOptions,
    ) -> Result<Stored> {
        let path = self.path(key)?;
        let dir = path
            .parent()
            .expect("a validated key has a parent directory");
        tokio::fs::create_dir_all(dir).await?;
        // Write beside the target and rename: readers see the whole file or nothing. The
        // temporary file is removed when it is dropped unrenamed: on an error, and also when
        // this future is dropped part-way (an upload timeout, a client gone, a shutdown).
        let dir_owned = dir.to_owned();
        let tmp = tokio::task::spawn_blocking(move || {
            let mut builder = tempfile::Builder::new();
            builder.prefix(".").suffix(".part");
            // As a plain create would leave it (tempfile's default is owner-only).
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                builder.permissions(std::fs::Permissions::from_mode(0o644));
            }
            builder.tempfile_in(dir_owned)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut size = 0;
        let mut hasher = Hasher::default();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            file.write_all(&chunk).await?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
        }
        file.sync_all().await?;
        drop(file);
        tokio::task::spawn_blocking(move || tmp_path.persist(path))
            .await
            .map_err(std::io::Error::other)?
            .map_err(|e| e.error)?;
        Ok(Stored {
            size,
            etag: None,
            sha256: hasher.finish(),
        })
    }

    async fn open(&self, key: &str) -> Result<StoredObject> {
        let path = self.path(key)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| not_found(key, e))?;
        let size = file.metadata().await?.len();
        Ok(StoredObject {
            body: Box::pin(ReaderStream::new(file)),
            size,
            content_type: guess_type(&path),
            cache_control: None,
            content_disposition: None,
            etag: None,
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(tokio::fs::try_exists(self.path(key)?).await?)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| not_found(key, e))?;
        Ok(ObjectMeta {
            size: meta.len(),
            content_type: guess_type(&path),
            ..ObjectMeta::default()
        })
    }

    async fn read_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let file = tokio::fs::File::open(self.path(key)?)
            .await
            .map_err(|e| not_found(key, e))?;
        let mut file = file;
        file.seek(std::io::SeekFrom::Start(range.start)).await?;
        let mut buffer = Vec::new();
        file.take(range.end.saturating_sub(range.start))
            .read_to_end(&mut buffer)
            .await?;
        Ok(buffer.into())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let base = if self.location.is_empty() {
            self.root.clone()
        } else {
            self.root.join(&self.location)
        };
        let mut found = Vec::new();
        let mut dirs = vec![(base, String::new())];
        while let Some((dir, rel)) = dirs.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            while let Some(entry) = entries.next_entry().await? {
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if name.starts_with('.') {
                    continue; // in-progress writes
                }
                let key = join_location(&rel, &name);
                let kind = entry.file_type().await?;
                if kind.is_dir() {
                    dirs.push((entry.path(), key));
                } else if kind.is_file() && key.starts_with(prefix) {
                    found.push(ObjectInfo {
                        key,
                        size: entry.metadata().await?.len(),
                        etag: None,
                    });
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn url(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        match self.visibility {
            Visibility::Public => Ok(self.url_path(key)),
            Visibility::Private => Err(StorageError::NotPublic),
        }
    }

    fn base_url(&self) -> String {
        if self.location.is_empty() {
            self.base_url.clone()
        } else {
            format!(
                "{}{}/",
                self.base_url,
                utf8_percent_encode(&self.location, URI_PATH)
            )
        }
    }

    fn signed_url(&self, key: &str, options: &SignedUrlOptions) -> Result<String> {
        validate_key(key)?;
        let grant = SignedGrant {
            path: join_location(&self.location, key),
            expires: UrlSigner::expiry(SystemTime::now(), options.ttl),
            disposition: options
                .download_filename
                .as_deref()
                .map(content_disposition),
            content_type: options.content_type.clone(),
        };
        let mut url = format!("{}?expires={}", self.url_path(key), grant.expires);
        if let Some(d) = &grant.disposition {
            url.push_str("&disposition=");
            url.extend(utf8_percent_encode(d, URI_COMPONENT));
        }
        if let Some(t) = &grant.content_type {
            url.push_str("&content_type=");
            url.extend(utf8_percent_encode(t, URI_COMPONENT));
        }
        url.push_str("&signature=");
        url.push_str(&self.signer.sign(&grant));
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(root: &Path, location: &str, visibility: Visibility) -> FileSystemStorage {
        FileSystemStorage::new(
            root,
            location,
            "/media/",
            visibility,
            UrlSigner::new(&[7; 32]),
        )
    }

    fn body(bytes: &'static [u8]) -> ByteStream<'static> {
        Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(bytes))]))
    }

    #[tokio::test]
    async fn ranged_reads_stop_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path(), "private", Visibility::Private);
        s.save(
            "r.pdf",
            body(b"%PDF-1.4 ... %%EOF"),
            &SaveOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(&s.read_range("r.pdf", 0..5).await.unwrap()[..], b"%PDF-");
        assert_eq!(&s.read_range("r.pdf", 13..18).await.unwrap()[..], b"%%EOF");
        assert_eq!(
            &s.read_range("r.pdf", 13..1024).await.unwrap()[..],
            b"%%EOF"
        );
        assert!(matches!(
            s.read_range("missing.pdf", 0..5).await,
            Err(StorageError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn save_open_size_list_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path(), "private", Visibility::Private);
        s.save(
            "resumes/1/a.pdf",
            body(b"%PDF-1.4"),
            &SaveOptions::default(),
        )
        .await
        .unwrap();
        assert!(dir.path().join("private/resumes/1/a.pdf").is_file());
        assert_eq!(s.size("resumes/1/a.pdf").await.unwrap(), 8);
        assert!(s.exists("resumes/1/a.pdf").await.unwrap());
        let listed = s.list("resumes/").await.unwrap();
        assert_eq!(
            listed,
            vec![ObjectInfo {
                key: "resumes/1/a.pdf".into(),
                size: 8,
                etag: None,
            }]
        );
        let mut opened = s.open("resumes/1/a.pdf").await.unwrap();
        let chunk = opened.body.next().await.unwrap().unwrap();
        assert_eq!(&chunk[..], b"%PDF-1.4");
        s.delete("resumes/1/a.pdf").await.unwrap();
        s.delete("resumes/1/a.pdf").await.unwrap();
        assert!(matches!(
            s.open("resumes/1/a.pdf").await,
            Err(StorageError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_failed_stream_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path(), "", Visibility::Public);
        let failing: ByteStream<'static> = Box::pin(futures_util::stream::iter([
            Ok(Bytes::from_static(b"partial")),
            Err(std::io::Error::other("client went away")),
        ]));
        assert!(
            s.save("avatars/x.png", failing, &SaveOptions::default())
                .await
                .is_err()
        );
        assert!(s.list("").await.unwrap().is_empty());
        let leftovers = std::fs::read_dir(dir.path().join("avatars"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn every_url_starts_with_the_base_url_and_none_takes_direct_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path(), "private", Visibility::Private);
        let signed = s
            .signed_url(
                "resumes/1/a.pdf",
                &SignedUrlOptions {
                    ttl: std::time::Duration::from_secs(60),
                    download_filename: None,
                    content_type: None,
                },
            )
            .unwrap();
        assert!(
            signed.starts_with(&s.base_url()),
            "{signed} {}",
            s.base_url()
        );
        let public = storage(dir.path(), "", Visibility::Public);
        let url = public.url("avatars/x.png").unwrap();
        assert_eq!(url, format!("{}avatars/x.png", public.base_url()));
        assert!(s.direct_uploads().is_none());
    }

    #[test]
    fn private_storage_gives_only_signed_urls() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path(), "private", Visibility::Private);
        assert!(matches!(s.url("a.pdf"), Err(StorageError::NotPublic)));
        let url = s
            .signed_url(
                "resumes/1/a.pdf",
                &SignedUrlOptions {
                    ttl: std::time::Duration::from_secs(600),
                    download_filename: Some("cv.pdf".into()),
                    content_type: Some("application/pdf".into()),
                },
            )
            .unwrap();
        assert!(url.starts_with("/media/private/resumes/1/a.pdf?expires="));
        assert!(url.contains("&signature="));
        let public = storage(dir.path(), "", Visibility::Public);
        assert_eq!(public.url("avatars/a.png").unwrap(), "/media/avatars/a.png");
    }
}
