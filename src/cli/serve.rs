//! `stowage serve`: the web server.

use anyhow::Context;

use crate::config::Config;
use crate::web;

#[derive(Debug, Default, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let state = web::build_state(&config).await?;

    tokio::spawn(web::housekeeping(state.clone()));

    let addr = std::net::SocketAddr::new(config.server.host, config.server.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} (HOST, PORT)"))?;
    let bound = listener.local_addr()?;
    tracing::info!(
        address = %bound,
        db.backend = ?state.db.backend(),
        storage.backend = ?config.media.backend,
        "listening on http://{bound}"
    );
    let db = state.db.clone();
    web::serve(listener, web::router(state), config.server.shutdown_grace).await?;
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}
