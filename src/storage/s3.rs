//! The S3 backend (aws-sdk-s3), for AWS and any S3-compatible endpoint: the [`Storage`]
//! trait here; the SDK client in `s3/client.rs`, saving (one PUT or a multipart upload) in
//! `s3/upload.rs`, copying inside S3 in `s3/copy.rs`, keys in `s3/credentials.rs`, URLs in
//! `s3/presign.rs`.
//!
//! Presigned URLs are made with `aws-sigv4`, the SDK's own signer, called directly: presigning
//! is local CPU work on the hot path of `/resume/{id}`, and the SDK's presign pipeline costs
//! about four times as much per URL.

use std::any::Any;
use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, MetadataDirective, ObjectCannedAcl,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::byte_stream::Length;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use percent_encoding::utf8_percent_encode;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::digest::Hasher;
use super::{
    ByteStream, DirectUploads, ObjectInfo, ObjectMeta, PresignedUpload, Result, SaveOptions,
    SignedUrlOptions, Storage, StorageError, Stored, StoredObject, URI_PATH, UploadConditions,
    Visibility, copy_streaming, join_location, validate_key,
};
use crate::config::{DirectUploadMethod, S3Config};

mod client;
mod copy;
mod credentials;
mod presign;
mod upload;

use client::bucket_url;
pub use client::{S3Client, client};
pub use credentials::KeySource;
use presign::Presigner;
use upload::{IN_MEMORY_LIMIT, MULTIPART_THRESHOLD};

#[derive(Debug, Clone)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    location: String,
    visibility: Visibility,
    cache_control: Option<String>,
    acl: Option<ObjectCannedAcl>,
    public_base: String,
    presigner: Presigner,
    /// The S3 service (endpoint and region) the bucket is on: objects are copied inside S3
    /// only between storages on the same one.
    service: String,
}

impl S3Storage {
    pub fn new(
        client: S3Client,
        config: &S3Config,
        bucket: String,
        location: &str,
        visibility: Visibility,
        cache_control: Option<String>,
    ) -> Self {
        let bucket_url = bucket_url(config, &bucket);
        let public_base = match &config.custom_domain {
            Some(domain) if domain.contains("://") => domain.clone(),
            Some(domain) => format!("https://{domain}"),
            None => bucket_url.clone(),
        };
        Self {
            client: client.sdk,
            location: location.trim_matches('/').to_owned(),
            visibility,
            cache_control,
            // Private objects never get a canned ACL: they must stay unreadable unsigned.
            acl: match visibility {
                Visibility::Public => config.default_acl.as_deref().map(ObjectCannedAcl::from),
                Visibility::Private => None,
            },
            public_base,
            service: format!(
                "{}|{}",
                config.endpoint_url.as_ref().map_or("aws", |u| u.as_str()),
                config.region
            ),
            presigner: Presigner::new(client.keys, config.region.clone(), bucket_url),
            bucket,
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn full_key(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(join_location(&self.location, key))
    }
}

fn metadata(options: &SaveOptions) -> Option<std::collections::HashMap<String, String>> {
    (!options.metadata.is_empty()).then(|| options.metadata.clone().into_iter().collect())
}

/// An ETag without its quotes.
fn bare_etag(etag: Option<&str>) -> Option<String> {
    etag.map(|e| e.trim_matches('"').to_owned())
}

/// Maps an SDK error: a missing object is [`StorageError::NotFound`]; any other refusal (a
/// missing bucket, a denied key) is [`StorageError::Refused`], and throttling, server errors
/// and network failures are [`StorageError::Unavailable`]. The web layer answers all but the
/// first with a 503.
fn sdk_error<E>(key: &str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let not_found = match &err {
        // HEAD answers carry no body, so their 404 has no error code.
        SdkError::ServiceError(e) => match e.err().code() {
            Some(code) => matches!(code, "NoSuchKey" | "NotFound"),
            None => e.raw().status().as_u16() == 404,
        },
        _ => false,
    };
    if not_found {
        return StorageError::NotFound(key.to_owned());
    }
    // A refusal (403 AccessDenied, 400 InvalidAccessKeyId…) will not pass by trying again;
    // throttling (503 SlowDown, 429), other 5xx and connection failures may.
    let refused = match &err {
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            (400..500).contains(&status)
                && status != 429
                && !matches!(e.err().code(), Some("RequestTimeout" | "SlowDown"))
        }
        _ => false,
    };
    // What the store said, in its words: the SDK's own rendering of a service error repeats
    // the whole raw response. A HEAD answer has no body, so only its status.
    let message = match &err {
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            let code = e.err().code().unwrap_or(reason);
            match e.err().message() {
                Some(message) => format!("{code} (HTTP {status}): {message}"),
                None => format!("{code} (HTTP {status})"),
            }
        }
        _ => DisplayErrorContext(&err).to_string(),
    };
    if refused {
        StorageError::Refused(message)
    } else {
        StorageError::Unavailable(message)
    }
}

impl DirectUploads for S3Storage {
    fn upload_url(&self) -> &str {
        &self.presigner.bucket_url
    }

    /// The object's headers (`Cache-Control`, the ACL) travel as form fields of a POST and as
    /// signed headers of a PUT; either way the browser cannot change them.
    fn presigned_upload(
        &self,
        key: &str,
        method: DirectUploadMethod,
        conditions: &UploadConditions,
    ) -> Result<PresignedUpload> {
        let full = self.full_key(key)?;
        let mut headers = BTreeMap::new();
        if let Some(cache_control) = &self.cache_control {
            headers.insert("Cache-Control".to_owned(), cache_control.clone());
        }
        let now = SystemTime::now();
        match method {
            DirectUploadMethod::Post => {
                let mut fields = headers;
                fields.insert("key".into(), full);
                if let Some(acl) = &self.acl {
                    fields.insert("acl".into(), acl.as_str().to_owned());
                }
                self.presigner
                    .presign_post(&self.bucket, fields, conditions, now)
            }
            DirectUploadMethod::Put => {
                if let Some(acl) = &self.acl {
                    headers.insert("x-amz-acl".into(), acl.as_str().to_owned());
                }
                self.presigner.presign_put(&full, headers, conditions, now)
            }
        }
    }
}

#[async_trait]
impl Storage for S3Storage {
    async fn save(
        &self,
        key: &str,
        mut body: ByteStream<'_>,
        options: &SaveOptions,
    ) -> Result<Stored> {
        let full = self.full_key(key)?;
        let mut buffer = BytesMut::new();
        let mut hasher = Hasher::default();
        while buffer.len() <= IN_MEMORY_LIMIT {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    hasher.update(&chunk);
                    buffer.extend_from_slice(&chunk);
                }
                None => {
                    let length = buffer.len() as u64;
                    let bytes = SdkByteStream::from(buffer.freeze());
                    let etag = self.put_whole(&full, bytes, length, options).await?;
                    return Ok(Stored {
                        size: length,
                        etag,
                        sha256: hasher.finish(),
                    });
                }
            }
        }
        // Spool the rest; the whole body is read (and checked) before anything is sent, so a
        // failing stream never reaches S3. The file is deleted when `spool` drops.
        let spool = tempfile::NamedTempFile::new()?;
        let mut file = tokio::fs::File::create(spool.path()).await?;
        file.write_all(&buffer).await?;
        drop(buffer);
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        let length = file.metadata().await?.len();
        drop(file);
        let etag = if length <= MULTIPART_THRESHOLD {
            let bytes = SdkByteStream::from_path(spool.path())
                .await
                .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
            self.put_whole(&full, bytes, length, options).await?
        } else {
            self.put_multipart(&full, spool.path(), length, options)
                .await?
        };
        Ok(Stored {
            size: length,
            etag,
            sha256: hasher.finish(),
        })
    }

    async fn open(&self, key: &str) -> Result<StoredObject> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        let size = out.content_length().unwrap_or_default().max(0) as u64;
        let content_type = out.content_type().map(str::to_owned);
        let cache_control = out.cache_control().map(str::to_owned);
        let content_disposition = out.content_disposition().map(str::to_owned);
        let etag = bare_etag(out.e_tag());
        let body = ReaderStream::new(out.body.into_async_read()).map_err(std::io::Error::other);
        Ok(StoredObject {
            body: Box::pin(body),
            size,
            content_type,
            cache_control,
            content_disposition,
            etag,
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        match self.size(key).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A GET of a probe key that need not exist. A HEAD would not do: without
    /// `s3:ListBucket`, S3 answers a missing key with 403 rather than 404, and a HEAD's 403
    /// has no body to tell "this key may not list" (the bucket answers, the key is good) from
    /// "this key is unknown or its signature wrong" (it does not). A GET's error code does.
    async fn ping(&self) -> Result<()> {
        let full = self.full_key(super::PROBE_KEY)?;
        let answer = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .range("bytes=0-0")
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err().code(), Some("NoSuchKey" | "AccessDenied")) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error(super::PROBE_KEY, e)),
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        Ok(ObjectMeta {
            size: out.content_length().unwrap_or_default().max(0) as u64,
            etag: bare_etag(out.e_tag()),
            content_type: out.content_type().map(str::to_owned),
            cache_control: out.cache_control().map(str::to_owned),
            content_disposition: out.content_disposition().map(str::to_owned),
            metadata: out
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        })
    }

    async fn read_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let full = self.full_key(key)?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let range = format!("bytes={}-{}", range.start, range.end - 1);
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .range(range)
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Unavailable(format!("reading {key:?}: {e}")))?;
        Ok(body.into_bytes())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let full_prefix = if self.location.is_empty() {
            prefix.to_owned()
        } else {
            format!("{}/{prefix}", self.location)
        };
        let strip = if self.location.is_empty() {
            0
        } else {
            self.location.len() + 1
        };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(prefix, e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    found.push(ObjectInfo {
                        key: key[strip.min(key.len())..].to_owned(),
                        size: object.size().unwrap_or_default().max(0) as u64,
                        etag: bare_etag(object.e_tag()),
                    });
                }
            }
        }
        Ok(found)
    }

    fn url(&self, key: &str) -> Result<String> {
        let full = self.full_key(key)?;
        match self.visibility {
            Visibility::Public => Ok(format!(
                "{}/{}",
                self.public_base,
                utf8_percent_encode(&full, URI_PATH)
            )),
            Visibility::Private => Err(StorageError::NotPublic),
        }
    }

    fn signed_url(&self, key: &str, options: &SignedUrlOptions) -> Result<String> {
        let full = self.full_key(key)?;
        self.presigner.presign_get(&full, options)
    }

    fn base_url(&self) -> String {
        // Unsigned URLs are the public base's (a custom domain, maybe); signed ones the bucket's.
        let base = match self.visibility {
            Visibility::Public => &self.public_base,
            Visibility::Private => &self.presigner.bucket_url,
        };
        if self.location.is_empty() {
            format!("{base}/")
        } else {
            format!("{base}/{}/", utf8_percent_encode(&self.location, URI_PATH))
        }
    }

    fn direct_uploads(&self) -> Option<&dyn DirectUploads> {
        Some(self)
    }

    /// Inside S3 when `source` is a bucket on the same S3 service (this storage's credentials
    /// must read it); through the process otherwise.
    async fn copy_from(&self, source: &dyn Storage, from: &str, to: &str) -> Result<u64> {
        match (source as &dyn Any).downcast_ref::<S3Storage>() {
            Some(s3) if s3.service == self.service => {
                self.copy_object(&s3.bucket, &s3.full_key(from)?, to).await
            }
            _ => copy_streaming(source, from, self, to).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::AddressingStyle;

    fn config(endpoint: Option<&str>, style: AddressingStyle) -> S3Config {
        S3Config {
            keys: Some(crate::config::S3Keys {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned().into(),
                session_token: None,
            }),
            bucket: "media".into(),
            private_bucket: None,
            region: "us-east-1".into(),
            endpoint_url: endpoint.map(|e| e.parse().unwrap()),
            addressing_style: style,
            default_acl: None,
            custom_domain: None,
        }
    }

    fn private_storage(c: &S3Config) -> S3Storage {
        S3Storage::new(
            client(c),
            c,
            "media".into(),
            "private",
            Visibility::Private,
            None,
        )
    }

    #[test]
    fn every_url_starts_with_the_base_url() {
        let c = config(Some("http://127.0.0.1:9000"), AddressingStyle::Auto);
        let private = private_storage(&c);
        assert_eq!(private.base_url(), "http://127.0.0.1:9000/media/private/");
        let signed = private
            .signed_url(
                "resumes/1/a b.pdf",
                &SignedUrlOptions {
                    ttl: Duration::from_secs(60),
                    download_filename: None,
                    content_type: None,
                },
            )
            .unwrap();
        assert!(signed.starts_with(&format!("{}resumes/1/a%20b.pdf?", private.base_url())));
        let mut cdn = c.clone();
        cdn.custom_domain = Some("cdn.example".into());
        let public = S3Storage::new(
            client(&cdn),
            &cdn,
            "media".into(),
            "",
            Visibility::Public,
            None,
        );
        assert_eq!(public.base_url(), "https://cdn.example/");
        assert_eq!(
            public.url("avatars/x.png").unwrap(),
            "https://cdn.example/avatars/x.png"
        );
        assert_eq!(
            private.direct_uploads().map(DirectUploads::upload_url),
            Some("http://127.0.0.1:9000/media")
        );
    }

    #[test]
    fn bucket_urls_follow_the_addressing_style() {
        let c = config(Some("http://127.0.0.1:9000"), AddressingStyle::Auto);
        assert_eq!(bucket_url(&c, "media"), "http://127.0.0.1:9000/media");
        let c = config(None, AddressingStyle::Auto);
        assert_eq!(
            bucket_url(&c, "media"),
            "https://media.s3.us-east-1.amazonaws.com"
        );
        let c = config(None, AddressingStyle::Path);
        assert_eq!(
            bucket_url(&c, "media"),
            "https://s3.us-east-1.amazonaws.com/media"
        );
    }

    #[tokio::test]
    async fn presigned_urls_carry_the_download_headers_and_expiry() {
        let c = config(Some("http://127.0.0.1:9000"), AddressingStyle::Auto);
        let storage = private_storage(&c);
        let url = storage
            .signed_url(
                "resumes/1/ab.pdf",
                &SignedUrlOptions {
                    ttl: Duration::from_secs(600),
                    download_filename: Some("Zoë.pdf".into()),
                    content_type: Some("application/pdf".into()),
                },
            )
            .unwrap();
        assert!(url.starts_with("http://127.0.0.1:9000/media/private/resumes/1/ab.pdf?"));
        assert!(url.contains("response-content-disposition=attachment%3B%20filename%3D%22Zo_.pdf%22%3B%20filename%2A%3DUTF-8%27%27Zo%25C3%25AB.pdf"));
        assert!(url.contains("response-content-type=application%2Fpdf"));
        assert!(url.contains("X-Amz-Expires=600"));
        assert!(url.contains("X-Amz-Signature="));
        assert!(!url.contains("wJalrXUtnFEMI"));
        assert!(matches!(storage.url("a"), Err(StorageError::NotPublic)));
    }

    fn conditions() -> UploadConditions {
        UploadConditions {
            content_type: "application/pdf".into(),
            size: 1000,
            sha256: crate::storage::Sha256Digest::of(b"abc"),
            ttl: Duration::from_secs(600),
        }
    }

    #[test]
    fn presigned_posts_pin_every_field_the_size_the_digest_and_the_expiry() {
        let c = config(Some("http://127.0.0.1:9000"), AddressingStyle::Auto);
        let storage = private_storage(&c);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_083_400);
        let fields = BTreeMap::from([("key".to_owned(), "private/resumes/1/ab.pdf".to_owned())]);
        let post = storage
            .presigner
            .presign_post("media", fields, &conditions(), now)
            .unwrap();
        assert_eq!(post.method, DirectUploadMethod::Post);
        assert_eq!(post.url, "http://127.0.0.1:9000/media");
        let f = &post.fields;
        assert_eq!(f["key"], "private/resumes/1/ab.pdf");
        assert_eq!(f["Content-Type"], "application/pdf");
        assert_eq!(f["x-amz-date"], "20251125T151000Z");
        assert_eq!(
            f["x-amz-credential"],
            "AKIDEXAMPLE/20251125/us-east-1/s3/aws4_request"
        );
        assert_eq!(f["x-amz-signature"].len(), 64);
        let policy = aws_smithy_types::base64::decode(&f["policy"]).unwrap();
        let policy: serde_json::Value = serde_json::from_slice(&policy).unwrap();
        assert_eq!(policy["expiration"], "2025-11-25T15:20:00Z");
        let conditions = policy["conditions"].as_array().unwrap();
        assert!(conditions.contains(&serde_json::json!({ "bucket": "media" })));
        assert!(conditions.contains(&serde_json::json!(["content-length-range", 1000, 1000])));
        assert_eq!(f["x-amz-checksum-algorithm"], "SHA256");
        assert_eq!(
            f["x-amz-checksum-sha256"],
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        for (name, value) in f {
            if name != "policy" && name != "x-amz-signature" {
                assert!(
                    conditions.contains(&serde_json::json!({ name: value })),
                    "{name} is not pinned by the policy"
                );
            }
        }
        assert!(!f.values().any(|v| v.contains("wJalrXUtnFEMI")));
    }

    #[test]
    fn presigned_puts_sign_the_type_the_length_and_the_digest() {
        let c = config(Some("http://127.0.0.1:9000"), AddressingStyle::Auto);
        let storage = private_storage(&c);
        let put = storage
            .presigned_upload("resumes/1/ab.pdf", DirectUploadMethod::Put, &conditions())
            .unwrap();
        assert_eq!(put.method, DirectUploadMethod::Put);
        assert!(put.fields.is_empty());
        assert!(
            put.url
                .starts_with("http://127.0.0.1:9000/media/private/resumes/1/ab.pdf?"),
            "{}",
            put.url
        );
        assert!(put.url.contains("X-Amz-Expires=600"));
        assert!(
            put.url.contains(
                "X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bx-amz-checksum-sha256"
            ),
            "{}",
            put.url
        );
        assert_eq!(put.headers["Content-Type"], "application/pdf");
        assert_eq!(
            put.headers["x-amz-checksum-sha256"],
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        assert!(
            !put.headers.contains_key("Content-Length"),
            "the browser sets it"
        );
    }
}
