//! Presigning for one bucket: GET URLs with response headers, browser POST forms whose policy
//! pins every field, and browser PUT URLs that sign every header. Local CPU work only (SigV4
//! with `aws-sigv4`); no request leaves.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use percent_encoding::utf8_percent_encode;

use super::credentials::{Current, KeySource};
use crate::config::DirectUploadMethod;
use crate::storage::{
    PresignedUpload, Result, SignedUrlOptions, StorageError, URI_COMPONENT, URI_PATH,
    UploadConditions, content_disposition,
};

/// Makes presigned GET URLs and POST forms for one bucket.
#[derive(Clone)]
pub(super) struct Presigner {
    keys: KeySource,
    region: String,
    /// `scheme://host[:port][/base]/bucket` (path style) or `scheme://bucket.host[:port]`.
    pub(super) bucket_url: String,
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigner")
            .field("region", &self.region)
            .field("bucket_url", &self.bucket_url)
            .finish_non_exhaustive()
    }
}

/// `20261125T151000Z`, the SigV4 timestamp.
const AMZ_DATE: &[time::format_description::BorrowedFormatItem<'_>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

impl Presigner {
    pub(super) fn new(keys: KeySource, region: String, bucket_url: String) -> Self {
        Self {
            keys,
            region,
            bucket_url,
        }
    }

    /// The keys to sign with now; none yet (the credential chain has not answered) is a 503.
    fn current(&self) -> Result<Current> {
        self.keys.current().ok_or_else(|| {
            StorageError::Unavailable("no S3 credentials from the AWS credential chain yet".into())
        })
    }

    /// A browser-based upload form (SigV4 POST policy): every field the form sends is pinned
    /// by an exact-match condition, the body's length by `content-length-range` (exactly
    /// `conditions.size`) and its content by `x-amz-checksum-sha256`.
    /// <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html>
    pub(super) fn presign_post(
        &self,
        bucket: &str,
        mut fields: BTreeMap<String, String>,
        conditions: &UploadConditions,
        now: SystemTime,
    ) -> Result<PresignedUpload> {
        let Current { credentials, .. } = self.current()?;
        let at = time::OffsetDateTime::from(now);
        let amz_date = at
            .format(AMZ_DATE)
            .map_err(|e| StorageError::Unavailable(format!("presigning: {e}")))?;
        let expiration = (at + conditions.ttl)
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| StorageError::Unavailable(format!("presigning: {e}")))?;
        fields.insert("Content-Type".into(), conditions.content_type.clone());
        fields.insert("x-amz-checksum-algorithm".into(), "SHA256".into());
        fields.insert(
            "x-amz-checksum-sha256".into(),
            conditions.sha256.to_base64(),
        );
        fields.insert("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into());
        fields.insert(
            "x-amz-credential".into(),
            format!(
                "{}/{}/{}/s3/aws4_request",
                credentials.access_key_id(),
                &amz_date[..8],
                self.region
            ),
        );
        fields.insert("x-amz-date".into(), amz_date);
        if let Some(token) = credentials.session_token() {
            fields.insert("x-amz-security-token".into(), token.to_owned());
        }
        let mut pinned = vec![serde_json::json!({ "bucket": bucket })];
        pinned.extend(
            fields
                .iter()
                .map(|(name, value)| serde_json::json!({ name: value })),
        );
        pinned.push(serde_json::json!([
            "content-length-range",
            conditions.size,
            conditions.size
        ]));
        let policy = serde_json::json!({ "expiration": expiration, "conditions": pinned });
        let policy = aws_smithy_types::base64::encode(policy.to_string());
        let signing_key =
            v4::generate_signing_key(credentials.secret_access_key(), now, &self.region, "s3");
        let signature = v4::calculate_signature(signing_key, policy.as_bytes());
        fields.insert("policy".into(), policy);
        fields.insert("x-amz-signature".into(), signature);
        Ok(PresignedUpload {
            method: DirectUploadMethod::Post,
            url: self.bucket_url.clone(),
            fields,
            headers: BTreeMap::new(),
        })
    }

    /// A presigned PUT of `full_key`, for stores without browser POST: `Content-Type`,
    /// `Content-Length`, `x-amz-checksum-sha256` and `headers` are signed, so the browser must
    /// send exactly these (it sets `Content-Length` from the body itself), and the store
    /// refuses a body of another length or digest.
    pub(super) fn presign_put(
        &self,
        full_key: &str,
        mut headers: BTreeMap<String, String>,
        conditions: &UploadConditions,
        now: SystemTime,
    ) -> Result<PresignedUpload> {
        headers.insert("Content-Type".into(), conditions.content_type.clone());
        headers.insert(
            "x-amz-checksum-sha256".into(),
            conditions.sha256.to_base64(),
        );
        let length = conditions.size.to_string();
        let url = self.object_url(full_key);
        let signed: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .chain([("Content-Length", length.as_str())])
            .collect();
        let url = self.presign("PUT", url, signed, conditions.ttl, now)?;
        Ok(PresignedUpload {
            method: DirectUploadMethod::Put,
            url,
            fields: BTreeMap::new(),
            headers,
        })
    }

    /// `bucket_url/key`, the key percent-encoded as S3 reads a path.
    fn object_url(&self, full_key: &str) -> String {
        format!(
            "{}/{}",
            self.bucket_url,
            utf8_percent_encode(full_key, URI_PATH)
        )
    }

    pub(super) fn presign_get(&self, full_key: &str, options: &SignedUrlOptions) -> Result<String> {
        let mut url = self.object_url(full_key);
        let mut sep = '?';
        if let Some(name) = &options.download_filename {
            url.push(sep);
            url.push_str("response-content-disposition=");
            url.extend(utf8_percent_encode(
                &content_disposition(name),
                URI_COMPONENT,
            ));
            sep = '&';
        }
        if let Some(content_type) = &options.content_type {
            url.push(sep);
            url.push_str("response-content-type=");
            url.extend(utf8_percent_encode(content_type, URI_COMPONENT));
        }
        self.presign("GET", url, Vec::new(), options.ttl, SystemTime::now())
    }

    /// Adds the SigV4 query parameters to `url` for a `method` request with `headers` (each
    /// then signed, and required as signed), valid for `ttl` from `now`.
    fn presign(
        &self,
        method: &str,
        mut url: String,
        headers: Vec<(&str, &str)>,
        ttl: std::time::Duration,
        now: SystemTime,
    ) -> Result<String> {
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(ttl);
        // S3 checks the path exactly as sent.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let current = self.current()?;
        let params = v4::SigningParams::builder()
            .identity(&current.identity)
            .region(&self.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| StorageError::Unavailable(format!("presigning: {e}")))?
            .into();
        let request = SignableRequest::new(
            method,
            Cow::Borrowed(url.as_str()),
            headers.into_iter(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| StorageError::Unavailable(format!("presigning: {e}")))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| StorageError::Unavailable(format!("presigning: {e}")))?
            .into_parts();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (name, value) in instructions.params() {
            url.push(sep);
            url.push_str(name);
            url.push('=');
            url.extend(utf8_percent_encode(value, URI_COMPONENT));
            sep = '&';
        }
        Ok(url)
    }
}
