//! `cargo run --example s3-server -- [--port N] [--data DIR] [--bucket NAME]...
//! [--log-requests] [--latency-ms N]`: the tests' S3-compatible server as a process, for the
//! benchmarks and for trying
//! `DEFAULT_FILE_STORAGE=s3` by hand. Prints the variables that point stowage at it, then serves
//! until interrupted; with `--log-requests`, every request goes to stderr as `METHOD /path`;
//! with `--latency-ms N`, every request is answered N ms late, as from a remote S3.

#[path = "s3.rs"]
mod s3;

/// Every value given to `--name`.
fn values(name: &str) -> Vec<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].clone())
        .collect()
}

fn arg(name: &str) -> Option<String> {
    values(name).pop()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(9000);
    let data = arg("--data").unwrap_or_else(|| "data/s3".into());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    // Buckets are directories of the data root.
    for bucket in values("--bucket") {
        std::fs::create_dir_all(std::path::Path::new(&data).join(bucket))?;
    }
    if let Some(ms) = arg("--latency-ms").and_then(|ms| ms.parse().ok()) {
        s3::LATENCY_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
    if std::env::args().any(|a| a == "--log-requests") {
        s3::LOG_REQUESTS.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let mut server = s3::S3Server::start(data.clone().into(), listener)?;
    println!(
        "S3-compatible server on {} (data in {data})",
        server.endpoint
    );
    println!("  AWS_S3_ENDPOINT_URL={}", server.endpoint);
    println!("  AWS_ACCESS_KEY_ID={}", s3::ACCESS_KEY);
    println!("  AWS_SECRET_ACCESS_KEY={}", s3::SECRET_KEY);
    tokio::signal::ctrl_c().await?;
    server.stop().await?;
    Ok(())
}
