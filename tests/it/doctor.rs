//! `stowage doctor` on Garage: a configuration that works passes every check; broken ones
//! fail the checks they break, each with its fix, and the command exits non-zero.

use std::collections::HashMap;

use crate::helpers::{AppOptions, Stack, spawn_app_with};
use crate::process::free_port;
use crate::staging::run;

const ORIGIN: &str = "https://members.example";

/// Runs `stowage doctor --origin ORIGIN` with `vars`; its exit status and output.
fn doctor(vars: &HashMap<String, String>) -> (bool, String) {
    let vars: Vec<(&str, String)> = vars.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let out = run(&["doctor", "--origin", ORIGIN], &vars);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    (out.status.success(), stdout)
}

/// The line of the check whose text contains `what`.
fn line<'a>(output: &'a str, what: &str) -> &'a str {
    output
        .lines()
        .find(|l| (l.starts_with('✓') || l.starts_with('✗')) && l.contains(what))
        .unwrap_or_else(|| panic!("no check about {what:?} in:\n{output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_working_configuration_and_names_the_fix_of_broken_ones() {
    let app = spawn_app_with(Stack::PostgresS3, AppOptions::default()).await;
    let s3 = app.s3.as_ref().unwrap();
    s3.allow_direct_uploads_from(ORIGIN).await;
    let mut good = app.env.clone();
    for (k, v) in [
        ("STATICFILES_STORAGE", "s3".to_owned()),
        ("LIVE_AWS_STORAGE_BUCKET_NAME", s3.bucket.clone()),
        (
            "LIVE_AWS_PRIVATE_STORAGE_BUCKET_NAME",
            s3.private_bucket.clone(),
        ),
        (
            "LIVE_READ_ONLY_ACCESS_KEY_ID",
            s3.read_only_access_key.clone(),
        ),
        ("LIVE_READ_ONLY_SECRET_KEY", s3.read_only_secret_key.clone()),
    ] {
        good.insert(k.into(), v);
    }

    let (ok, output) = doctor(&good);
    assert!(ok, "{output}");
    let checks: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with('✓') || l.starts_with('✗'))
        .collect();
    assert!(checks.iter().all(|l| l.starts_with('✓')), "{output}");
    for what in [
        "database: reachable, every migration applied",
        "media storage",
        "avatars are readable by anyone",
        "private storage",
        "objects are refused without a signature",
        "a presigned URL serves the object",
        "assets are readable by anyone",
        "the CORS rule admits POST from https://members.example",
        "the read-only key can read",
        "the read-only key cannot write",
        "clock: within",
    ] {
        line(&output, what);
    }
    assert!(
        output.contains(&format!(
            "{} checks: {} passed, 0 failed",
            checks.len(),
            checks.len()
        )),
        "{output}"
    );
    assert!(
        app.all_objects().await.is_empty(),
        "the probes were deleted"
    );

    // Broken: an unmigrated database, avatars not served where the pages link them, a CORS
    // rule for another site, a "read-only" live key that can write.
    let dir = tempfile::tempdir().unwrap();
    let mut broken = good.clone();
    for (k, v) in [
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("new.db").display()),
        ),
        (
            "AWS_S3_CUSTOM_DOMAIN",
            format!("http://127.0.0.1:{}", free_port()),
        ),
        ("LIVE_READ_ONLY_ACCESS_KEY_ID", s3.access_key.clone()),
        ("LIVE_READ_ONLY_SECRET_KEY", s3.secret_key.clone()),
    ] {
        broken.insert(k.into(), v);
    }
    s3.allow_direct_uploads_from("https://elsewhere.example")
        .await;
    let (ok, output) = doctor(&broken);
    assert!(!ok, "{output}");
    assert!(line(&output, "database:").starts_with("✗ database: reachable, but"));
    assert!(output.contains("Run `stowage migrate`"), "{output}");
    assert!(line(&output, "as the pages link avatars").starts_with('✗'));
    assert!(
        output.contains("AWS_S3_CUSTOM_DOMAIN is http://127.0.0.1:"),
        "{output}"
    );
    let cors = line(&output, "CORS rule");
    assert!(
        cors.starts_with('✗') && cors.contains("does not admit POST"),
        "{cors}"
    );
    assert!(
        output.contains("\"AllowedOrigins\": [\n"),
        "the rule to set: {output}"
    );
    let write = line(&output, "live media storage");
    assert!(write.starts_with('✓'), "it can read: {write}");
    assert!(output.contains("the read-only key could write"), "{output}");
    assert!(
        output.contains("\"Action\": \"s3:GetObject\""),
        "the read-only policy: {output}"
    );
    // What works still passes.
    assert!(line(&output, "objects are refused without a signature").starts_with('✓'));

    // Broken: the wrong region; then a key that may not write.
    s3.allow_direct_uploads_from(ORIGIN).await;
    let mut wrong_region = good.clone();
    wrong_region.insert("AWS_S3_REGION_NAME".into(), "eu-west-3".into());
    let (ok, output) = doctor(&wrong_region);
    assert!(!ok, "{output}");
    let media = line(&output, "media storage");
    assert!(
        media.starts_with("✗") && media.contains("does not answer"),
        "{output}"
    );
    assert!(output.contains("that AWS_S3_REGION_NAME is the bucket's region"));

    let mut read_only = good.clone();
    read_only.insert("AWS_ACCESS_KEY_ID".into(), s3.read_only_access_key.clone());
    read_only.insert(
        "AWS_SECRET_ACCESS_KEY".into(),
        s3.read_only_secret_key.clone(),
    );
    let (ok, output) = doctor(&read_only);
    assert!(!ok, "{output}");
    let put = line(&output, "cannot put, read and delete");
    assert!(put.starts_with('✗') && put.contains("put:"), "{put}");
    assert!(
        output.contains("\"s3:DeleteObject\""),
        "the app key's policy: {output}"
    );
}
