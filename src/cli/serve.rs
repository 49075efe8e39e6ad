//! `stowage serve`: the web server.

use anyhow::Context;

use crate::config::{Config, Environment};
use crate::jobs::housekeeping;
use crate::services::Services;
use crate::web;

#[derive(Debug, Default, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    let config = Config::from_env()?
        .require_site_url()?
        .keep_development_secret_key()?;
    let services = Services::build(&config).await?;
    match config.env {
        // `cargo run --release` serves with no configuration and no other step.
        Environment::Development => services.db.migrate().await.context("applying migrations")?,
        // The release phase migrates (Procfile, heroku.yml); instances only check.
        Environment::Production => services.check_migrated().await?,
    }
    let state = web::AppState::build(config.clone(), services).await;
    state.db.listen_for_invalidations().await;
    // Beside the server, on every instance.
    let (db, storages) = (&state.db, &state.storages);
    let shared = state.config.clone();
    tokio::spawn(housekeeping::sweep(db.clone(), storages.clone(), shared));
    tokio::spawn(housekeeping::retry_deletions(db.clone(), storages.clone()));

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
    let downloads = state.downloads.clone();
    let shutdown = state.shutdown();
    web::serve(listener, web::router(state), shutdown).await?;
    // Every download recorded while serving is written before the process ends.
    downloads
        .flush(
            config
                .server
                .shutdown_grace
                .max(std::time::Duration::from_secs(5)),
        )
        .await;
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}
