//! The web application: its state here, the routes in `web/router.rs`, the server loop in
//! `web/server.rs`, and one module per feature.
//!
//! Handlers hold no SQL and no AWS SDK calls: they talk to [`Database`] and [`Storages`].
//! [`router`] is a plain function of the state, so that the tests serve exactly what `serve`
//! serves.

mod account;
mod csrf;
mod direct_upload;
mod edge;
mod error;
mod health;
mod login;
mod media;
mod own_data;
mod password;
mod profiles;
mod proxy;
mod resume;
mod router;
mod security;
mod server;
mod sessions;
mod share;
mod signup;
mod templates;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::auth::PasswordHasher;
use crate::auth::throttle::LoginThrottle;
use crate::config::Config;
use crate::db::Database;
use crate::db::downloads::DownloadLog;
use crate::services::Services;
use crate::slots::Slots;
use crate::statics::StaticSite;
use crate::storage::Storages;

pub use error::AppError;
pub use router::router;
pub use server::{CONNECTION_IDLE, HEADER_READ_TIMEOUT, Shutdown, serve};

/// Everything a handler may need; cheap to clone: one reference count (each request clones it
/// for every extractor and layer that takes it, so its parts sit behind one `Arc`).
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// What an [`AppState`] holds. The configuration is held as parsed; what is derived from it
/// once (the CSRF key, a header value) sits beside it.
#[derive(Debug)]
pub struct AppParts {
    pub config: Arc<Config>,
    pub db: Database,
    pub storages: Storages,
    /// How pages link static assets (through the manifest once collected).
    pub statics: Arc<StaticSite>,
    /// Bounded argon2: sign-in, sign-up and password change share its slots.
    pub hasher: PasswordHasher,
    /// Failed sign-ins and sign-ups, counted in the database.
    pub throttle: LoginThrottle,
    /// Bounded avatar decoding and re-encoding.
    pub avatar_slots: Slots,
    /// One permit per data export streaming now (`EXPORT_CONCURRENCY`).
    pub exports: Arc<tokio::sync::Semaphore>,
    /// Signs CSRF tokens; derived from `SECRET_KEY`.
    pub csrf_key: csrf::CsrfKey,
    /// `MEDIA_CACHE_CONTROL`, as the header `/media/` answers with.
    pub media_cache_control: HeaderValue,
    /// Set when the process is told to stop (see [`serve`]).
    pub draining: health::Draining,
    /// Who fetched which resume, written off the request path (`DOWNLOAD_LOG_DAYS`).
    pub downloads: DownloadLog,
}

impl AppState {
    /// The web layer over `services`: reads the static manifest (a failure to read it is
    /// logged, and pages link `static/` as it is); writes nothing.
    pub async fn build(config: Config, services: Services) -> Self {
        let statics = StaticSite::load(&config, services.storages.static_files.as_ref()).await;
        Self(Arc::new(AppParts {
            hasher: PasswordHasher::new(config.security.password_hash_concurrency),
            throttle: LoginThrottle::new(services.db.clone(), &config.security),
            avatar_slots: Slots::new(config.security.avatar_processing_concurrency),
            exports: Arc::new(tokio::sync::Semaphore::new(
                config.security.export_concurrency,
            )),
            csrf_key: csrf::CsrfKey::derive(config.secret_key()),
            media_cache_control: HeaderValue::from_str(&config.media.cache_control)
                .expect("MEDIA_CACHE_CONTROL is checked while parsing"),
            downloads: if config.download_log_days == 0 {
                DownloadLog::off()
            } else {
                DownloadLog::start(services.db.clone())
            },
            db: services.db,
            storages: services.storages,
            statics: Arc::new(statics),
            config: Arc::new(config),
            draining: health::Draining::default(),
        }))
    }

    /// How [`serve`] holds connections and stops for this state's server.
    pub fn shutdown(&self) -> Shutdown {
        Shutdown {
            draining: self.draining.clone(),
            drain: self.config.server.shutdown_drain,
            grace: self.config.server.shutdown_grace,
            max_connections: self.config.server.max_connections,
        }
    }

    pub fn session_limits(&self) -> sessions::SessionLimits {
        sessions::SessionLimits {
            idle: self.config.security.session_idle,
            max_age: self.config.security.session_max_age,
        }
    }
}

/// The session cookie's name (see [`router`]).
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-stowage_session"
    } else {
        "stowage_session"
    }
}

/// The values of the request's cookies named `name`, in the order sent.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(key, _)| *key == name)
        .map(|(_, value)| value)
}

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// This request's id (set by [`edge`] when the client sent none).
fn request_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}
