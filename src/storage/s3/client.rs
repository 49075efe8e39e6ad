//! The SDK client: keys, endpoint, addressing style and timeouts from the configuration.

use std::time::Duration;

use aws_sdk_s3::Client;

// A part of `s3.rs`, split out by concern: everything there is in scope here.
use super::*;

/// The SDK client of one configuration and the keys it signs with, which the presigners of
/// its storages share.
#[derive(Debug, Clone)]
pub struct S3Client {
    pub(super) sdk: Client,
    pub(super) keys: KeySource,
}

impl S3Client {
    pub fn sdk(&self) -> &Client {
        &self.sdk
    }
}

/// Builds the SDK client from the configuration: static keys or the AWS credential chain,
/// endpoint override, addressing style and bounded timeouts so an unreachable endpoint fails
/// fast with a 503.
pub fn client(config: &S3Config) -> S3Client {
    let keys = KeySource::new(config.keys.as_ref(), &config.region);
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .credentials_provider(keys.clone())
        // The key source is the cache: the SDK asks it every time, so a rotation reaches
        // the client and the presigners at the same moment.
        .identity_cache(aws_sdk_s3::config::IdentityCache::no_cache())
        .force_path_style(config.path_style())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .read_timeout(Duration::from_secs(20))
                .build(),
        );
    if let Some(endpoint) = &config.endpoint_url {
        // S3-compatible stores: checksums only where an operation requires one. The SDK's
        // default (a CRC32 in an aws-chunked trailer on every upload) is AWS's own, and
        // stores differ on it: Garage refuses its trailer signatures, as others did when
        // the SDKs made it the default.
        builder = builder
            .endpoint_url(endpoint.as_str().trim_end_matches('/'))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    S3Client {
        sdk: Client::from_conf(builder.build()),
        keys,
    }
}

pub(super) fn bucket_url(config: &S3Config, bucket: &str) -> String {
    let (scheme, host, base) = match &config.endpoint_url {
        Some(url) => {
            let host = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_owned(),
            };
            (
                url.scheme().to_owned(),
                host,
                url.path().trim_end_matches('/').to_owned(),
            )
        }
        None => (
            "https".to_owned(),
            format!("s3.{}.amazonaws.com", config.region),
            String::new(),
        ),
    };
    if config.path_style() {
        format!("{scheme}://{host}{base}/{bucket}")
    } else {
        format!("{scheme}://{bucket}.{host}{base}")
    }
}
