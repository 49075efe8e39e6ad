//! The seed's way of copying media, for `bench/copy-media` to measure stowage against: one
//! object at a time, GET the whole object with the live (read-only) key, then PUT it with the
//! staging key, in a simple loop on the same SDK.
//!
//! `sequential-copy ENDPOINT LIVE_BUCKET DEST_BUCKET` with `LIVE_KEY`, `LIVE_SECRET`,
//! `DEST_KEY`, `DEST_SECRET` in the environment. Prints the objects and bytes copied.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

fn client(endpoint: &str, key: &str, secret: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(key, secret, None, None, "bench"))
        // As stowage (and boto3 configured for a non-AWS endpoint): checksums only where
        // required, which every S3-compatible store accepts.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(config)
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is required"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, live_bucket, dest_bucket] = args.as_slice() else {
        return Err("usage: sequential-copy ENDPOINT LIVE_BUCKET DEST_BUCKET".into());
    };
    let live = client(endpoint, &env("LIVE_KEY"), &env("LIVE_SECRET"));
    let dest = client(endpoint, &env("DEST_KEY"), &env("DEST_SECRET"));
    let (mut objects, mut bytes) = (0u64, 0u64);
    let mut pages = live
        .list_objects_v2()
        .bucket(live_bucket)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page?.contents() {
            let key = object.key().unwrap_or_default();
            let got = live
                .get_object()
                .bucket(live_bucket)
                .key(key)
                .send()
                .await?;
            let content_type = got.content_type().map(str::to_owned);
            let body = got.body.collect().await?.into_bytes();
            bytes += body.len() as u64;
            dest.put_object()
                .bucket(dest_bucket)
                .key(key)
                .set_content_type(content_type)
                .body(body.into())
                .send()
                .await?;
            objects += 1;
        }
    }
    println!("{objects} objects, {bytes} bytes");
    Ok(())
}
