//! The doctor's fixes: for a failed check, the exact change that makes it pass (the variable,
//! the bucket policy, the CORS rule or the IAM statement, as JSON for the configured buckets).

// A part of `doctor.rs`, split out by concern: everything there is in scope here.
use super::*;

/// The buckets of the media storages, for the policies: (media, private).
fn media_buckets(config: &Config) -> (String, String) {
    match &config.s3 {
        Some(s3) => (
            s3.bucket.clone(),
            s3.private_bucket
                .clone()
                .unwrap_or_else(|| s3.bucket.clone()),
        ),
        None => ("MEDIA-BUCKET".into(), "PRIVATE-BUCKET".into()),
    }
}

pub(super) fn answer_fix(config: &Config, role: Role) -> String {
    if !is_s3(config, role) {
        return match role {
            Role::Static => "Check STATIC_ROOT: the directory must exist or be creatable.".into(),
            _ => "Check MEDIA_ROOT: the directory must exist or be creatable.".into(),
        };
    }
    let bucket_var = match role {
        Role::Media => "AWS_STORAGE_BUCKET_NAME",
        Role::Private => "AWS_PRIVATE_STORAGE_BUCKET_NAME, or else AWS_STORAGE_BUCKET_NAME,",
        Role::Static => "STATIC_AWS_STORAGE_BUCKET_NAME, or else AWS_STORAGE_BUCKET_NAME,",
    };
    format!(
        "Check that the bucket {bucket_var} names exists, that AWS_S3_REGION_NAME is the \
         bucket's region, that AWS_S3_ENDPOINT_URL is right (unset on AWS), and that the key \
         is valid."
    )
}

pub(super) fn key_fix(config: &Config, role: Role) -> String {
    if !is_s3(config, role) {
        let var = if role == Role::Static {
            "STATIC_ROOT"
        } else {
            "MEDIA_ROOT"
        };
        return format!("Make {var} writable by the user the app runs as.");
    }
    if role == Role::Static {
        let bucket = config
            .statics
            .s3
            .as_ref()
            .map_or("STATIC-BUCKET".to_owned(), |s3| s3.bucket.clone());
        let prefix = &config.media.assets_prefix;
        return format!(
            "Grant the static key (STATIC_AWS_ACCESS_KEY_ID, or AWS_ACCESS_KEY_ID) this IAM \
             policy:\n{}",
            pretty(serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                     "Resource": format!("arn:aws:s3:::{bucket}/{prefix}/*")},
                    {"Effect": "Allow", "Action": "s3:ListBucket",
                     "Resource": format!("arn:aws:s3:::{bucket}"),
                     "Condition": {"StringLike": {"s3:prefix": format!("{prefix}/*")}}}
                ]
            }))
        );
    }
    let (media, private) = media_buckets(config);
    let mut objects = vec![format!("arn:aws:s3:::{media}/*")];
    let mut buckets = vec![format!("arn:aws:s3:::{media}")];
    if private != media {
        objects.push(format!("arn:aws:s3:::{private}/*"));
        buckets.push(format!("arn:aws:s3:::{private}"));
    }
    format!(
        "Grant the app key (AWS_ACCESS_KEY_ID, or the role the credential chain finds) this IAM \
         policy:\n{}",
        pretty(serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow",
                 "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                            "s3:AbortMultipartUpload"],
                 "Resource": objects},
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": buckets}
            ]
        }))
    )
}

pub(super) fn private_fix(config: &Config) -> String {
    let (media, private) = media_buckets(config);
    let separate = if private == media {
        format!(
            "Better, keep resumes in a bucket of their own (AWS_PRIVATE_STORAGE_BUCKET_NAME); \
             in {media}, no bucket policy or ACL may cover private/*."
        )
    } else {
        format!("No bucket policy, ACL or website endpoint may expose {private}.")
    };
    format!(
        "Resumes must never be readable without a signature: turn all four settings of Block \
         Public Access on for {private}, remove any public-read ACL (and leave AWS_DEFAULT_ACL \
         unset) and any bucket policy with \"Principal\": \"*\". {separate}"
    )
}

pub(super) fn presign_fix(config: &Config) -> String {
    format!(
        "Presigned URLs are signed for region {:?} with the app key: AWS_S3_REGION_NAME must be \
         the bucket's region, the key must have s3:GetObject on the private bucket, and the \
         host's clock must be right.",
        config.s3.as_ref().map_or("", |s3| s3.region.as_str())
    )
}

pub(super) fn public_fix(config: &Config, role: Role) -> String {
    let s3 = match role {
        Role::Static => config.statics.s3.as_ref(),
        _ => config.s3.as_ref(),
    };
    let Some(s3) = s3 else {
        return "Public files on the filesystem are served by the app at MEDIA_URL/STATIC_URL."
            .into();
    };
    if let Some(domain) = &s3.custom_domain {
        return format!(
            "AWS_S3_CUSTOM_DOMAIN is {domain}: the CDN there must serve the bucket {} (its \
             origin, with origin access control on CloudFront) at the same paths.",
            s3.bucket
        );
    }
    let prefixes = [
        format!("arn:aws:s3:::{}/{AVATARS}*", s3.bucket),
        format!(
            "arn:aws:s3:::{}/{}/*",
            s3.bucket, config.media.assets_prefix
        ),
    ];
    format!(
        "Avatars and assets are linked unsigned. Either set AWS_S3_CUSTOM_DOMAIN to a CDN in \
         front of {bucket} (recommended; Block Public Access stays on), or turn off the two \
         \"public bucket policies\" settings of Block Public Access for {bucket} and add this \
         bucket policy:\n{}",
        pretty(serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "PublicAvatarsAndAssets",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": prefixes
            }]
        })),
        bucket = s3.bucket
    )
}

pub(super) fn cors_fix(origin: &str) -> String {
    format!(
        "Set this CORS configuration on the private bucket (S3 console: Permissions, CORS; or \
         `aws s3api put-bucket-cors --cors-configuration '{{\"CORSRules\": …}}'`):\n{}",
        pretty(serde_json::json!([{
            "AllowedOrigins": [origin],
            "AllowedMethods": ["POST", "PUT"],
            "AllowedHeaders": ["*"],
            "MaxAgeSeconds": 3000
        }]))
    )
}

pub(super) fn live_fix(bucket: &str, private_bucket: Option<&str>) -> String {
    let mut objects = vec![format!("arn:aws:s3:::{bucket}/*")];
    let mut buckets = vec![format!("arn:aws:s3:::{bucket}")];
    if let Some(private) = private_bucket {
        objects.push(format!("arn:aws:s3:::{private}/*"));
        buckets.push(format!("arn:aws:s3:::{private}"));
    }
    format!(
        "Give LIVE_READ_ONLY_ACCESS_KEY_ID exactly this IAM policy, and nothing that writes:\n{}",
        pretty(serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects},
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": buckets}
            ]
        }))
    )
}

fn pretty(value: serde_json::Value) -> String {
    serde_json::to_string_pretty(&value).expect("a JSON value serialises")
}
