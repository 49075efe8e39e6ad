//! `stowage serve`: the web server.

use anyhow::Context;

use crate::config::Config;
use tower_sessions::session_store::ExpiredDeletion;

use crate::db::SqlSessionStore;
use crate::web;

#[derive(Debug, Default, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let state = web::build_state(&config).await?;

    // Sweep expired sessions once an hour.
    let sweeper = SqlSessionStore::new(state.db.clone(), std::time::Duration::ZERO);
    tokio::spawn(async move {
        let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every_hour.tick().await;
            if let Err(e) = sweeper.delete_expired().await {
                tracing::warn!(error = %e, "could not delete expired sessions");
            }
        }
    });

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
