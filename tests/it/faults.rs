//! Faults: the S3-compatible server or the database taken away while the app serves, then
//! given back. The app answers 503 where it needs what is gone, keeps answering what it can
//! (a presigned redirect needs no network), leaves nothing half-written, and recovers without
//! a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{
    AppOptions, Stack, TestApp, extract_csrf, multipart_resume, raw_request, sample_pdf,
};
use crate::tcp_proxy::proxied_postgres_database;
use crate::uploads::member_app;

/// Every avatar and resume object in storage is referenced by a profile, and every reference
/// has its object: nothing half-written, nothing dangling.
async fn assert_storage_matches_rows(app: &TestApp) {
    assert_eq!(app.media_objects().await, app.media_references().await);
}

/// Posts a resume through the form, as the edit page does; returns the status.
async fn post_resume(app: &TestApp, pdf: &[u8]) -> StatusCode {
    let token = app.csrf_token_from("/profile/edit").await;
    let (content_type, body) = multipart_resume(&token, pdf);
    app.client
        .post(app.url("/profile/resume"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn s3_stopped_mid_upload_and_mid_resume_then_back() {
    let mut app = member_app(Stack::PostgresS3, AppOptions::default()).await;
    let profile = app.ada_profile().await;
    assert_eq!(
        post_resume(&app, &sample_pdf("before the outage")).await,
        StatusCode::SEE_OTHER
    );
    let kept_key = app.ada_profile().await.resume_key.unwrap();

    // An upload of 6 MiB (a multipart upload to S3) is on its way when the server stops.
    let token = app.csrf_token_from("/profile/edit").await;
    let mut big = sample_pdf("lost in the outage");
    big.splice(9..9, std::iter::repeat_n(b' ', 6 * 1024 * 1024));
    let (content_type, body) = multipart_resume(&token, &big);
    let head = format!(
        "POST /profile/resume HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.cookie_header(),
        body.len()
    );
    let port = app.port();
    let upload = tokio::spawn(async move {
        raw_request(port, &head, &body, 30, Duration::from_millis(50)).await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    app.s3.as_mut().unwrap().stop().await;
    let (status, response) = upload.await.unwrap();
    assert_eq!(status, 503, "{response}");
    assert!(response.contains("storage is not answering"), "{response}");

    // A form upload while it is down: 503 too.
    assert_eq!(
        post_resume(&app, &sample_pdf("also lost")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The resume link still answers: presigning is local work.
    let link = app.get(&format!("/resume/{}", profile.id)).await;
    assert_eq!(link.status(), StatusCode::FOUND);
    assert_eq!(
        app.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    app.s3.as_mut().unwrap().restart();
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let location = app.get(&format!("/resume/{}", profile.id)).await.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let served = app.fetch(&location).await.bytes().await.unwrap();
    assert_eq!(&served[..], &sample_pdf("before the outage")[..]);
    assert_eq!(app.ada_profile().await.resume_key.unwrap(), kept_key);
    assert_storage_matches_rows(&app).await;

    // Uploads work again, with no restart.
    assert_eq!(
        post_resume(&app, &sample_pdf("after")).await,
        StatusCode::SEE_OTHER
    );
    assert_storage_matches_rows(&app).await;
}

#[tokio::test]
async fn database_stopped_and_restarted_under_load() {
    let (mut proxy, url) = proxied_postgres_database().await;
    let options = AppOptions {
        vars: vec![("DATABASE_URL", url), ("DATABASE_POOL_SIZE", "4".into())],
    };
    let app = Arc::new(member_app(Stack::PostgresS3, options).await);
    let profile = app.ada_profile().await;
    app.give_resume(profile.id, "cv.pdf", sample_pdf("load"))
        .await;
    let page = app.get_html("/profile/edit").await;
    assert!(extract_csrf(&page).is_some());

    // 16 clients loop over the directory, a profile and the resume link.
    let outage = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..16 {
        let (app, outage, stop) = (app.clone(), outage.clone(), stop.clone());
        let paths = [
            "/".to_owned(),
            format!("/profiles/{}", profile.id),
            format!("/resume/{}", profile.id),
        ];
        workers.push(tokio::spawn(async move {
            let mut seen: Vec<(bool, u16)> = Vec::new();
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                let path = &paths[n % paths.len()];
                n += 1;
                let during = outage.load(Ordering::Relaxed);
                let status = match app.client.get(app.url(path)).send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(e) => panic!("the app dropped a request: {e}"),
                };
                seen.push((during, status));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    outage.store(true, Ordering::Relaxed);
    proxy.stop().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.resume();
    outage.store(false, Ordering::Relaxed);
    let back = Instant::now();
    // Recovery: every path answers normally again within a few seconds.
    loop {
        let statuses = [
            app.get("/").await.status(),
            app.get(&format!("/profiles/{}", profile.id)).await.status(),
        ];
        if statuses.iter().all(|s| *s == StatusCode::OK) {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(10), "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut seen = Vec::new();
    for worker in workers {
        let statuses = worker.await.unwrap();
        // Each client's last requests, well after recovery, succeed.
        let last = &statuses[statuses.len().saturating_sub(5)..];
        assert!(
            last.iter().all(|(_, s)| matches!(s, 200 | 302)),
            "recovered: {last:?}"
        );
        seen.extend(statuses);
    }
    let during: Vec<u16> = seen.iter().filter(|(d, _)| *d).map(|(_, s)| *s).collect();
    let outside: Vec<u16> = seen.iter().filter(|(d, _)| !*d).map(|(_, s)| *s).collect();
    assert!(during.contains(&503), "the outage answered 503s");
    for status in &during {
        assert!(
            matches!(status, 200 | 302 | 503),
            "during the outage: {status} (only pages served from memory, or 503)"
        );
    }
    for status in &outside {
        assert!(
            matches!(status, 200 | 302 | 503),
            "outside the outage: {status}"
        );
    }
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}
