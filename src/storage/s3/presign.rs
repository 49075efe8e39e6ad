//! Presigning for one bucket: GET URLs with response headers, browser POST forms whose policy
//! pins every field, and browser PUT URLs that sign every header. Local CPU work only (SigV4
//! with `aws-sigv4`); no request leaves.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use percent_encoding::utf8_percent_encode;
use sha2::{Digest, Sha256};

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
    /// What SigV4 signs of `bucket_url`: the host (a default port left out) and the path.
    host: String,
    base_path: String,
    /// What every URL of the day signs with, derived once per day and set of keys rather than
    /// per URL.
    day: Arc<Mutex<Option<Arc<Day>>>>,
}

/// A day's signing material for one set of keys.
struct Day {
    credentials: Credentials,
    /// `yyyymmdd`.
    date: String,
    /// The SigV4 signing key: HMACs of the secret, the date, the region and `s3`.
    key: Vec<u8>,
    /// `date/region/s3/aws4_request`.
    scope: String,
    /// `X-Amz-Credential`'s value: the access key id and the scope, percent-encoded.
    credential: String,
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigner")
            .field("region", &self.region)
            .field("bucket_url", &self.bucket_url)
            .finish_non_exhaustive()
    }
}

impl Presigner {
    pub(super) fn new(keys: KeySource, region: String, bucket_url: String) -> Self {
        let (host, base_path) = host_and_path(&bucket_url);
        Self {
            keys,
            region,
            bucket_url,
            host,
            base_path,
            day: Arc::default(),
        }
    }

    /// The signing material for `credentials` on `date`, from the day's cache when it can be.
    fn day(&self, credentials: &Credentials, date: &str, now: SystemTime) -> Arc<Day> {
        let mut day = self.day.lock().unwrap_or_else(|e| e.into_inner());
        match &*day {
            Some(cached) if cached.date == date && cached.credentials == *credentials => {
                cached.clone()
            }
            _ => {
                let key = v4::generate_signing_key(
                    credentials.secret_access_key(),
                    now,
                    &self.region,
                    "s3",
                );
                let scope = format!("{date}/{}/s3/aws4_request", self.region);
                let credential = format!("{}/{scope}", credentials.access_key_id());
                let fresh = Arc::new(Day {
                    credentials: credentials.clone(),
                    date: date.to_owned(),
                    key: key.as_ref().to_vec(),
                    credential: utf8_percent_encode(&credential, URI_COMPONENT).to_string(),
                    scope,
                });
                *day = Some(fresh.clone());
                fresh
            }
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
        let amz_date = String::from_utf8_lossy(&amz_date(at)).into_owned();
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
        self.presign_get_at(full_key, options, SystemTime::now())
    }

    /// A presigned GET of `full_key`, with `response-content-disposition` and
    /// `response-content-type` when asked: SigV4 query-string authentication that signs only
    /// `host`. The hot path of `/resume/{id}`, so the canonical request of this one shape is
    /// written out here, with the day's signing key cached, rather than built by
    /// `aws_sigv4::sign`, which parses the URL back, sorts a generic canonical request and
    /// derives the key again on every call (a sixth of the request's CPU). The URL is byte
    /// for byte what `aws_sigv4` makes (see the tests), and [`Presigner::presign`] still signs
    /// everything else.
    fn presign_get_at(
        &self,
        full_key: &str,
        options: &SignedUrlOptions,
        now: SystemTime,
    ) -> Result<String> {
        let Current { credentials, .. } = self.current()?;
        let amz_date = amz_date(time::OffsetDateTime::from(now));
        let amz_date = std::str::from_utf8(&amz_date).expect("digits and letters");
        let date = &amz_date[..8];
        let day = self.day(&credentials, date, now);
        // Pieces are pushed onto strings rather than `format!`ed: formatting machinery was
        // the larger part of this function's time.
        let push_encoded = |out: &mut String, value: &str, set| {
            for piece in utf8_percent_encode(value, set) {
                out.push_str(piece);
            }
        };
        let mut path = String::with_capacity(self.base_path.len() + full_key.len() + 16);
        path.push_str(&self.base_path);
        path.push('/');
        push_encoded(&mut path, full_key, URI_PATH);
        let mut response_headers = String::new();
        if let Some(name) = options.download_filename.as_deref() {
            response_headers.push_str("response-content-disposition=");
            push_encoded(
                &mut response_headers,
                &content_disposition(name),
                URI_COMPONENT,
            );
        }
        if let Some(content_type) = options.content_type.as_deref() {
            if !response_headers.is_empty() {
                response_headers.push('&');
            }
            response_headers.push_str("response-content-type=");
            push_encoded(&mut response_headers, content_type, URI_COMPONENT);
        }
        let mut token = String::new();
        if let Some(value) = credentials.session_token() {
            token.push_str("X-Amz-Security-Token=");
            push_encoded(&mut token, value, URI_COMPONENT);
        }
        let expires = options.ttl.as_secs().to_string();
        let auth = [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=",
            &day.credential,
            "&X-Amz-Date=",
            amz_date,
            "&X-Amz-Expires=",
            &expires,
        ];

        // The canonical query: every parameter but the signature, sorted by encoded name
        // (upper case sorts before lower).
        let mut canonical = String::with_capacity(512);
        for piece in ["GET\n", &path, "\n"].into_iter().chain(auth) {
            canonical.push_str(piece);
        }
        if !token.is_empty() {
            canonical.push('&');
            canonical.push_str(&token);
        }
        canonical.push_str("&X-Amz-SignedHeaders=host");
        if !response_headers.is_empty() {
            canonical.push('&');
            canonical.push_str(&response_headers);
        }
        for piece in ["\nhost:", &self.host, "\n\nhost\nUNSIGNED-PAYLOAD"] {
            canonical.push_str(piece);
        }
        let mut string_to_sign = String::with_capacity(160);
        for piece in ["AWS4-HMAC-SHA256\n", amz_date, "\n", &day.scope, "\n"] {
            string_to_sign.push_str(piece);
        }
        string_to_sign.push_str(&hex::encode(Sha256::digest(canonical.as_bytes())));
        let signature = v4::calculate_signature(&day.key, string_to_sign.as_bytes());

        // The URL, its parameters in the order `aws_sigv4` gives them.
        let mut url = String::with_capacity(canonical.len() + 128);
        url.push_str(self.url_origin());
        url.push_str(&path);
        url.push('?');
        if !response_headers.is_empty() {
            url.push_str(&response_headers);
            url.push('&');
        }
        for piece in auth {
            url.push_str(piece);
        }
        url.push_str("&X-Amz-SignedHeaders=host&X-Amz-Signature=");
        url.push_str(&signature);
        if !token.is_empty() {
            url.push('&');
            url.push_str(&token);
        }
        Ok(url)
    }

    /// `bucket_url` without its path.
    fn url_origin(&self) -> &str {
        &self.bucket_url[..self.bucket_url.len() - self.base_path.len()]
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

/// What SigV4 signs of a bucket URL: its host, without the scheme's default port (as
/// `aws_sigv4` and HTTP clients send it), and its path (empty for a virtual-host bucket).
/// `at` as SigV4 writes time: `20261125T151000Z`.
fn amz_date(at: time::OffsetDateTime) -> [u8; 16] {
    let at = at.to_offset(time::UtcOffset::UTC);
    let mut out = *b"00000000T000000Z";
    let mut put = |end: usize, mut value: u32, digits: usize| {
        for i in (end - digits..end).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(4, at.year().clamp(0, 9999) as u32, 4);
    put(6, u8::from(at.month()).into(), 2);
    put(8, at.day().into(), 2);
    put(11, at.hour().into(), 2);
    put(13, at.minute().into(), 2);
    put(15, at.second().into(), 2);
    out
}

fn host_and_path(bucket_url: &str) -> (String, String) {
    let (scheme, rest) = bucket_url
        .split_once("://")
        .unwrap_or(("https", bucket_url));
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let host = match authority.rsplit_once(':') {
        Some((host, port))
            if (scheme, port) == ("http", "80") || (scheme, port) == ("https", "443") =>
        {
            host
        }
        _ => authority,
    };
    (host.to_owned(), path.to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::SecretString;

    use super::*;
    use crate::config::S3Keys;

    fn presigner(bucket_url: &str, token: Option<&str>) -> Presigner {
        let keys = S3Keys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: token.map(SecretString::from),
        };
        Presigner::new(
            KeySource::new(Some(&keys), "eu-west-3"),
            "eu-west-3".into(),
            bucket_url.into(),
        )
    }

    /// The same URL from `aws_sigv4::sign`, the way [`Presigner::presign`] makes it.
    fn by_aws_sigv4(
        presigner: &Presigner,
        key: &str,
        options: &SignedUrlOptions,
        now: SystemTime,
    ) -> String {
        let mut url = presigner.object_url(key);
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
        presigner
            .presign("GET", url, Vec::new(), options.ttl, now)
            .unwrap()
    }

    #[test]
    fn amz_dates_are_zero_padded_utc() {
        let at = time::macros::datetime!(2026-01-05 03:04:09 +02:00);
        assert_eq!(&amz_date(at), b"20260105T010409Z");
    }

    #[tokio::test]
    async fn presigned_gets_are_what_aws_sigv4_signs() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_300_000);
        let buckets = [
            "http://127.0.0.1:9000/bucket",
            "https://s3.eu-west-3.amazonaws.com/bucket",
            "https://bucket.s3.eu-west-3.amazonaws.com",
            "https://bucket.s3.eu-west-3.amazonaws.com:443",
            "http://minio.internal:80/base/bucket",
        ];
        let names = [
            Some("resume.pdf"),
            Some("Ada Lovelace (2026) + notes.pdf"),
            Some("Curriculum vitæ – Zoë.pdf"),
            Some("a/b\\\"c~*'.pdf"),
            None,
        ];
        for bucket in buckets {
            for token in [None, Some("FwoGZXIvYXdzE+token/with=odd&chars")] {
                let presigner = presigner(bucket, token);
                for name in names {
                    for content_type in [Some("application/pdf"), None] {
                        let options = SignedUrlOptions {
                            ttl: Duration::from_secs(600),
                            download_filename: name.map(str::to_owned),
                            content_type: content_type.map(str::to_owned),
                        };
                        let key = "media/resumes/2026/ab12cd34 ü+x.pdf";
                        // Twice: the second uses the cached signing key.
                        for _ in 0..2 {
                            assert_eq!(
                                presigner.presign_get_at(key, &options, now).unwrap(),
                                by_aws_sigv4(&presigner, key, &options, now),
                                "{bucket} {token:?} {name:?} {content_type:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn the_signing_key_follows_the_day() {
        let presigner = presigner("http://127.0.0.1:9000/bucket", None);
        let options = SignedUrlOptions {
            ttl: Duration::from_secs(60),
            download_filename: None,
            content_type: None,
        };
        let day = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_300_000);
        for now in [day, day + Duration::from_secs(86_400), day] {
            assert_eq!(
                presigner.presign_get_at("k", &options, now).unwrap(),
                by_aws_sigv4(&presigner, "k", &options, now)
            );
        }
    }
}
