//! `/media/` on the filesystem backend: public files plainly, private files only signed, and
//! no way out of `MEDIA_ROOT`.

use reqwest::StatusCode;
use stowage::storage::SaveOptions;

use crate::helpers::{Stack, body, spawn_app};

#[tokio::test]
async fn public_media_is_served_and_private_media_is_not() {
    let app = spawn_app(Stack::SqliteFilesystem).await;
    let opts = SaveOptions::default();
    app.storages()
        .public
        .save("avatars/1/a.png", body(b"png bytes".to_vec()), &opts)
        .await
        .unwrap();
    app.storages()
        .private
        .save("resumes/1/r.pdf", body(b"%PDF-secret".to_vec()), &opts)
        .await
        .unwrap();
    let client = app.anonymous_client();

    let public = client
        .get(app.url("/media/avatars/1/a.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::OK);
    assert_eq!(public.headers()["x-content-type-options"], "nosniff");
    assert_eq!(public.text().await.unwrap(), "png bytes");

    let private = client
        .get(app.url("/media/private/resumes/1/r.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), StatusCode::FORBIDDEN);
    assert!(!private.text().await.unwrap().contains("secret"));

    let missing = client
        .get(app.url("/media/avatars/none.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn media_paths_cannot_leave_the_media_root() {
    let app = spawn_app(Stack::SqliteFilesystem).await;
    std::fs::write(app.dir.path().join("outside.txt"), "outside").unwrap();
    std::fs::create_dir_all(app.dir.path().join("media/avatars")).unwrap();
    std::fs::write(app.dir.path().join("media/avatars/.hidden.part"), "partial").unwrap();
    let client = app.anonymous_client();
    for path in [
        "/media/../outside.txt",
        "/media/%2e%2e/outside.txt",
        "/media/avatars/%2e%2e/%2e%2e/outside.txt",
        "/media/%252e%252e/outside.txt",
        "/media/avatars/..%2f..%2foutside.txt",
        "/media/avatars/%5c..%5coutside.txt",
        "/media/avatars/.hidden.part",
        "/media/private/../../outside.txt",
    ] {
        // reqwest normalises literal dot segments; send the raw path as written.
        let response = raw_get(&app.address, path).await;
        assert!(
            response.starts_with("HTTP/1.1 404") || response.starts_with("HTTP/1.1 403"),
            "{path}: {}",
            response.lines().next().unwrap_or("")
        );
        assert!(
            !response.contains("outside") || response.contains("Not found"),
            "{path}"
        );
        assert!(!response.contains("partial"), "{path}");
    }
    let _ = client;
}

/// A GET with the path exactly as given, bypassing URL normalisation.
async fn raw_get(address: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
