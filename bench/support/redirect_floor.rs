//! The floor for `bench/resume-redirect`: the cheapest axum handler that answers `/resume/{id}`
//! with a constant 302, on the same runtime and framework as stowage. The gap between the two
//! is what sessions, the database and signing cost.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// The allocator stowage's binary uses, so that the floor differs only in the work.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn constant_redirect() -> impl IntoResponse {
    (
        StatusCode::FOUND,
        [
            (
                header::LOCATION,
                HeaderValue::from_static("http://127.0.0.1:9/bucket/private/resumes/1/x.pdf"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8001);
    let app = Router::new().route("/resume/{id}", get(constant_redirect));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("redirect floor on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
