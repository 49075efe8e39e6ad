//! Saving an object: one PUT from memory or a spooled file, or a multipart upload that is
//! aborted, never left behind, when it fails or is dropped.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;

// A part of `s3.rs`, split out by concern: everything there is in scope here.
use super::*;

/// Bodies up to this size are sent from memory in one PUT.
pub(super) const IN_MEMORY_LIMIT: usize = 1024 * 1024;
/// Larger bodies are spooled to a temporary file, so memory per upload stays at about one
/// chunk whatever the object's size, then sent from the file: in one PUT up to this size,
/// else as a multipart upload of parts of [`PART_SIZE`], each streamed from its file range.
pub(super) const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
const PART_SIZE: u64 = 16 * 1024 * 1024;

impl S3Storage {
    pub(super) async fn put_whole(
        &self,
        key: &str,
        body: SdkByteStream,
        length: u64,
        options: &SaveOptions,
    ) -> Result<Option<String>> {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(length as i64)
            .body(body)
            .set_content_type(options.content_type.clone())
            .set_cache_control(options.cache_control.clone().or(self.cache_control.clone()))
            .set_content_disposition(options.content_disposition.clone())
            .set_metadata(metadata(options))
            .set_acl(self.acl.clone())
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        Ok(bare_etag(put.e_tag()))
    }

    /// Multipart upload of a spooled file, each part streamed from its range of the file.
    pub(super) async fn put_multipart(
        &self,
        key: &str,
        path: &std::path::Path,
        length: u64,
        options: &SaveOptions,
    ) -> Result<Option<String>> {
        let create = self
            .client
            .create_multipart_upload()
            .set_content_type(options.content_type.clone())
            .set_cache_control(options.cache_control.clone().or(self.cache_control.clone()))
            .set_content_disposition(options.content_disposition.clone())
            .set_metadata(metadata(options));
        self.multipart(
            key,
            create,
            length,
            PART_SIZE,
            |upload_id, number, range| async move {
                let body = SdkByteStream::read_from()
                    .path(path)
                    .offset(range.start)
                    .length(Length::Exact(range.end - range.start))
                    .build()
                    .await
                    .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length((range.end - range.start) as i64)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| sdk_error(key, e))?;
                Ok(out.e_tag().map(str::to_owned))
            },
        )
        .await
    }

    /// A multipart upload of `key` (`length` bytes, in parts of `part_size`): `create` (with
    /// the object's headers) starts it, `send_part(upload id, part number, byte range)` sends
    /// each part and returns its ETag, then it is completed. On any failure it is aborted, so
    /// no truncated object ever becomes visible.
    pub(super) async fn multipart<F, Fut>(
        &self,
        key: &str,
        create: CreateMultipartUploadFluentBuilder,
        length: u64,
        part_size: u64,
        send_part: F,
    ) -> Result<Option<String>>
    where
        F: Fn(String, i32, std::ops::Range<u64>) -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>>>,
    {
        let created = create
            .bucket(&self.bucket)
            .key(key)
            .set_acl(self.acl.clone())
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| StorageError::Unavailable("no upload id from S3".into()))?
            .to_owned();
        // Should this future be dropped part-way (an upload timeout, a shutdown), the guard
        // aborts the upload so its parts neither linger invisibly nor stay billed.
        let guard = AbortOnDrop {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id: Some(upload_id.clone()),
        };
        let sent = async {
            let mut parts = Vec::new();
            let mut offset = 0;
            while offset < length {
                let end = (offset + part_size).min(length);
                let number = parts.len() as i32 + 1;
                let e_tag = send_part(upload_id.clone(), number, offset..end).await?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(e_tag)
                        .build(),
                );
                offset = end;
            }
            let done = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| sdk_error(key, e))?;
            Ok::<_, StorageError>(bare_etag(done.e_tag()))
        }
        .await;
        let mut guard = guard;
        let upload_id = guard.upload_id.take();
        if let (Err(_), Some(upload_id)) = (&sent, upload_id) {
            abort_upload(&self.client, &self.bucket, key, &upload_id).await;
        }
        sent
    }
}

/// Aborts a multipart upload so none of its parts become visible or stay billed.
async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    if let Err(e) = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        tracing::warn!(storage.key = key, error = %DisplayErrorContext(&e), "could not abort a multipart upload");
    }
}

/// Aborts a multipart upload that is dropped before it completed or was aborted. The abort
/// runs as a cleanup task (see [`super::cleanup_tasks`]), which `serve` waits for at exit.
struct AbortOnDrop {
    client: Client,
    bucket: String,
    key: String,
    /// Taken once the upload completed or was aborted in line.
    upload_id: Option<String>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        tracing::info!(storage.key = %key, "aborting an unfinished multipart upload");
        crate::storage::spawn_cleanup(async move {
            abort_upload(&client, &bucket, &key, &upload_id).await;
        });
    }
}
