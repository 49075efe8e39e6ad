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
