//! Presigning for one bucket: GET URLs with response headers, and browser POST forms whose
//! policy pins every field. Local CPU work only (SigV4 with `aws-sigv4`); no request leaves.

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
use crate::storage::{
    PostConditions, PresignedPost, Result, SignedUrlOptions, StorageError, URI_COMPONENT, URI_PATH,
    content_disposition,
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
    /// by an exact-match condition, and the body by `content-length-range`.
    /// <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html>
    pub(super) fn presign_post(
        &self,
        bucket: &str,
        mut fields: BTreeMap<String, String>,
        conditions: &PostConditions,
        now: SystemTime,
    ) -> Result<PresignedPost> {
        let Current { credentials, .. } = self.current()?;
        let at = time::OffsetDateTime::from(now);
        let amz_date = at
            .format(AMZ_DATE)
            .map_err(|e| StorageError::Unavailable(format!("presigning: {e}")))?;
        let expiration = (at + conditions.ttl)
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| StorageError::Unavailable(format!("presigning: {e}")))?;
        fields.insert("Content-Type".into(), conditions.content_type.clone());
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
            1,
            conditions.max_bytes
        ]));
        let policy = serde_json::json!({ "expiration": expiration, "conditions": pinned });
        let policy = aws_smithy_types::base64::encode(policy.to_string());
        let signing_key =
            v4::generate_signing_key(credentials.secret_access_key(), now, &self.region, "s3");
        let signature = v4::calculate_signature(signing_key, policy.as_bytes());
        fields.insert("policy".into(), policy);
        fields.insert("x-amz-signature".into(), signature);
        Ok(PresignedPost {
            url: self.bucket_url.clone(),
            fields,
        })
    }

    pub(super) fn presign_get(&self, full_key: &str, options: &SignedUrlOptions) -> Result<String> {
        let mut url = format!(
            "{}/{}",
            self.bucket_url,
            utf8_percent_encode(full_key, URI_PATH)
        );
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

        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(options.ttl);
        // S3 checks the path exactly as sent.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let current = self.current()?;
        let params = v4::SigningParams::builder()
            .identity(&current.identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| StorageError::Unavailable(format!("presigning: {e}")))?
            .into();
        let request = SignableRequest::new(
            "GET",
            Cow::Borrowed(url.as_str()),
            std::iter::empty(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| StorageError::Unavailable(format!("presigning: {e}")))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| StorageError::Unavailable(format!("presigning: {e}")))?
            .into_parts();
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
