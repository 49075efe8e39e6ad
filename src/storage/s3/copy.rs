//! Copying an object inside S3: CopyObject, or UploadPartCopy past 5 GiB.

// A part of `s3.rs`, split out by concern: everything there is in scope here.
use super::*;

/// CopyObject takes objects up to 5 GiB; larger ones are copied in parts of this size.
const COPY_PART_SIZE: u64 = 512 * 1024 * 1024;
const COPY_OBJECT_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

impl S3Storage {
    /// Copies `source_key` of `source_bucket` to `key` here inside S3 (CopyObject, or
    /// UploadPartCopy over 5 GiB), keeping its metadata; returns the size copied.
    pub(super) async fn copy_object(
        &self,
        source_bucket: &str,
        source_key: &str,
        key: &str,
    ) -> Result<u64> {
        let full = self.full_key(key)?;
        let copy_source = format!(
            "{source_bucket}/{}",
            utf8_percent_encode(source_key, URI_PATH)
        );
        let head = self
            .client
            .head_object()
            .bucket(source_bucket)
            .key(source_key)
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        let size = head.content_length().unwrap_or_default().max(0) as u64;
        if size <= COPY_OBJECT_LIMIT {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(&full)
                .copy_source(copy_source)
                .metadata_directive(MetadataDirective::Copy)
                .set_acl(self.acl.clone())
                .send()
                .await
                .map_err(|e| sdk_error(key, e))?;
            return Ok(size);
        }
        // Over 5 GiB: a multipart upload of ranges copied inside S3.
        let create = self
            .client
            .create_multipart_upload()
            .set_content_type(head.content_type().map(str::to_owned))
            .set_cache_control(head.cache_control().map(str::to_owned))
            .set_content_disposition(head.content_disposition().map(str::to_owned))
            .set_metadata(head.metadata().cloned());
        let (full, copy_source) = (&full, &copy_source);
        self.multipart(
            full,
            create,
            size,
            COPY_PART_SIZE,
            |upload_id, number, range| async move {
                let out = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(full)
                    .upload_id(upload_id)
                    .part_number(number)
                    .copy_source(copy_source)
                    .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
                    .send()
                    .await
                    .map_err(|e| sdk_error(key, e))?;
                Ok(out
                    .copy_part_result()
                    .and_then(|r| r.e_tag())
                    .map(str::to_owned))
            },
        )
        .await?;
        Ok(size)
    }
}
