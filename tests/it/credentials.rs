//! The AWS credential chain: with `AWS_ACCESS_KEY_ID` unset, `stowage serve` takes its S3 keys
//! from a container credentials endpoint (as on ECS), signs with the session token, and moves
//! to the next keys before the current ones expire.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::{Json, Router, extract::State, routing::get};
use reqwest::StatusCode;

use crate::garage::TestS3;
use crate::helpers::{PASSWORD, extract_csrf, multipart_resume, sample_pdf};
use crate::process::{Served, client, first_profile_id, postgres_s3_vars, serve, sign_up_as};

/// What the endpoint hands out: (access key, secret, token, lifetime), and how often it was
/// asked.
#[derive(Default)]
struct Endpoint {
    keys: Mutex<(String, String, String, Duration)>,
    asked: Mutex<u32>,
}

async fn credentials(State(endpoint): State<Arc<Endpoint>>) -> Json<serde_json::Value> {
    *endpoint.asked.lock().unwrap() += 1;
    let (key, secret, token, lifetime) = endpoint.keys.lock().unwrap().clone();
    let expiration = time::OffsetDateTime::from(SystemTime::now() + lifetime)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    Json(serde_json::json!({
        "AccessKeyId": key,
        "SecretAccessKey": secret,
        "Token": token,
        "Expiration": expiration,
    }))
}

/// The Location of `/resume/{id}`.
async fn presigned(http: &reqwest::Client, served: &Served, id: &str) -> String {
    let response = http
        .get(served.url(&format!("/resume/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND, "{}", served.output());
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn upload_resume(http: &reqwest::Client, served: &Served, marker: &str) -> StatusCode {
    let edit = http.get(served.url("/profile/edit")).send().await.unwrap();
    let token = extract_csrf(&edit.text().await.unwrap()).unwrap();
    let (content_type, body) = multipart_resume(&token, &sample_pdf(marker));
    http.post(served.url("/profile/resume"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_container_endpoint_with_their_token_and_rotate() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (s3, _, mut vars) = postgres_s3_vars(&dir, "chain").await;
    let s3: TestS3 = s3;
    let endpoint = Arc::new(Endpoint::default());
    // The first keys live 30 s: the app must move on to the next ones halfway.
    *endpoint.keys.lock().unwrap() = (
        s3.access_key.clone(),
        s3.secret_key.clone(),
        "token-one".into(),
        Duration::from_secs(30),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/credentials", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/credentials", get(credentials))
        .with_state(endpoint.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    vars.retain(|(k, _)| k != "AWS_ACCESS_KEY_ID" && k != "AWS_SECRET_ACCESS_KEY");
    vars.push(("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), uri));
    let served = serve(vars, dir).await;
    let (http, jar) = client();
    sign_up_as(&http, &jar, &served, "ada", PASSWORD).await;
    assert_eq!(
        upload_resume(&http, &served, "first keys").await,
        StatusCode::SEE_OTHER,
        "{}",
        served.output()
    );
    let id = first_profile_id(&http, &served).await;
    let url = presigned(&http, &served, &id).await;
    assert!(url.contains("X-Amz-Security-Token=token-one"), "{url}");
    let download = reqwest::get(&url).await.unwrap();
    assert_eq!(download.status(), StatusCode::OK, "{url}");
    assert!(download.text().await.unwrap().contains("first keys"));

    // The endpoint rotates: new keys, a new token. The app picks them up before the first
    // ones expire.
    let (next_key, next_secret) = s3.create_app_key("chain-next").await;
    *endpoint.keys.lock().unwrap() = (
        next_key,
        next_secret,
        "token-two".into(),
        Duration::from_secs(3600),
    );
    let rotated = Instant::now();
    let url = loop {
        let url = presigned(&http, &served, &id).await;
        if url.contains("X-Amz-Security-Token=token-two") {
            break url;
        }
        assert!(
            rotated.elapsed() < Duration::from_secs(25),
            "still signing with the first keys: {url}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The first keys are revoked: everything goes on with the new ones.
    crate::garage::garage().delete_key(&s3.access_key).await;
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        upload_resume(&http, &served, "next keys").await,
        StatusCode::SEE_OTHER,
        "{}",
        served.output()
    );
    let url = presigned(&http, &served, &id).await;
    let download = reqwest::get(&url).await.unwrap();
    assert_eq!(download.status(), StatusCode::OK, "{url}");
    assert!(download.text().await.unwrap().contains("next keys"));
    assert!(*endpoint.asked.lock().unwrap() >= 2);
}
