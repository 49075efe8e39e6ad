//! `/healthz` and `/readyz`.

use reqwest::StatusCode;

use crate::helpers::{STACKS, Stack, spawn_app};

#[tokio::test]
async fn ready_when_the_database_and_storage_answer() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status(), StatusCode::OK, "{stack:?}");
        assert_eq!(ready.headers()["cache-control"], "no-store");
    }
}

#[tokio::test]
async fn not_ready_names_what_does_not_answer() {
    let mut app = spawn_app(Stack::PostgresS3).await;
    app.s3.as_mut().unwrap().stop().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.text().await.unwrap(),
        "not ready: storage not answering"
    );
    assert_eq!(
        app.get("/healthz").await.status(),
        StatusCode::OK,
        "healthz touches nothing"
    );
    app.s3.as_mut().unwrap().restart();
    assert_eq!(
        app.get("/readyz").await.status(),
        StatusCode::OK,
        "back without a restart"
    );

    // The database gone: its connections are closed under the pool.
    let name = app
        .config
        .database
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let admin = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(&format!(r#"DROP DATABASE "{name}" WITH (FORCE)"#))
        .execute(&admin)
        .await
        .unwrap();
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.text().await.unwrap(),
        "not ready: database not answering"
    );
}

#[tokio::test]
async fn storage_is_ready_for_a_key_that_may_not_list() {
    // A key that may write but not read or list: S3 answers its requests for a missing key
    // with 403 AccessDenied, not 404, as AWS does for a key without s3:ListBucket. The
    // storage answers all the same.
    let app = spawn_app(Stack::PostgresS3).await;
    let s3 = app.s3.as_ref().unwrap();
    let (key, secret) = s3.create_key_allowed("no-list", false, true).await;
    let mut config = app.config.s3.clone().unwrap();
    config.keys = Some(stowage::config::S3Keys {
        access_key_id: key,
        secret_access_key: secret.into(),
        session_token: None,
    });
    let (public, private) = stowage::storage::Storages::s3_media(&config, None);
    let missing = private.exists("readyz-probe").await;
    assert!(
        matches!(missing, Err(stowage::storage::StorageError::Refused(_))),
        "a HEAD cannot tell: {missing:?}"
    );
    public.ping().await.unwrap();
    private.ping().await.unwrap();
}
