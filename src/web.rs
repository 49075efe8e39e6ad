//! The web application: state, router, middleware and serving.
//!
//! Handlers live in one module per feature and hold no SQL and no AWS SDK calls: they talk to
//! [`Database`] and [`Storages`]. [`router`] is a plain function so tests can drive it with
//! `oneshot` as well as over a socket.

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
mod security;
mod sessions;
mod share;
mod signup;
mod templates;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::routing::{get, post};
use axum_login::AuthManagerLayerBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::auth::throttle::LoginThrottle;
use crate::auth::{Backend, PasswordHasher};
use crate::config::{Config, StorageBackend};
use crate::db::downloads::DownloadLog;
use crate::db::sessions::AUTH_DATA_KEY;
use crate::db::{Database, SqlSessionStore};
use crate::services::Services;
use crate::slots::Slots;
use crate::statics::StaticSite;
use crate::storage::Storages;

pub use error::AppError;

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

/// The routes that take a file through the app: a raised body limit and `UPLOAD_TIMEOUT_SECS`.
const AVATAR_UPLOAD: &str = "/profile/avatar";
const RESUME_UPLOAD: &str = "/profile/resume";

/// The whole application.
pub fn router(state: AppState) -> Router {
    let secure = state.config.session_cookie_secure;
    let limits = state.session_limits();
    // `__Host-` when Secure: the browser then refuses the cookie from any other host or path.
    let session_layer = SessionManagerLayer::new(SqlSessionStore::new(state.db.clone()))
        .with_name(session_cookie_name(secure))
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(
            time::Duration::try_from(limits.idle).unwrap_or(time::Duration::weeks(2)),
        ));
    let auth_layer = AuthManagerLayerBuilder::new(
        Backend::new(state.db.clone(), state.hasher.clone()),
        session_layer,
    )
    .with_data_key(AUTH_DATA_KEY)
    .build();
    let csrf_settings = Arc::new(csrf::CsrfSettings {
        key: state.csrf_key.clone(),
        secure,
    });

    let media_route = format!("{}{{*path}}", state.config.media.url);
    let static_files = static_service(&state);

    // Each upload route accepts its own limit plus room for the multipart envelope; every
    // other route keeps axum's small default.
    let envelope = 64 * 1024;
    let avatar_limit = state.config.uploads.avatar_max_bytes as usize + envelope;
    let resume_limit = state.config.uploads.resume_max_bytes as usize + envelope;
    let account = Router::new()
        .route("/profile/edit", get(account::show_edit_profile))
        .route(
            AVATAR_UPLOAD,
            post(account::upload_avatar).layer(DefaultBodyLimit::max(avatar_limit)),
        )
        .route(
            RESUME_UPLOAD,
            post(account::upload_resume).layer(DefaultBodyLimit::max(resume_limit)),
        )
        .route("/profile/resume/delete", post(account::delete_resume))
        .route(
            "/profile/password",
            get(password::show_change_password).post(password::change_password),
        )
        .route("/profile/sessions/end", post(password::sign_out_everywhere))
        .route("/profile/export", post(own_data::export))
        .route(
            "/profile/delete",
            get(own_data::show_delete_account).post(own_data::delete_account),
        )
        .route("/profile/share-links", post(share::create_link))
        .route("/profile/share-links/{id}/revoke", post(share::revoke_link))
        .route_layer(axum::middleware::from_fn(account::require_member));

    // The direct-upload script's two routes answer JSON, their refusals included.
    let direct_uploads = Router::new()
        .route("/profile/resume/upload-url", get(direct_upload::issue))
        .route("/profile/resume/confirm", post(direct_upload::confirm))
        .route_layer(axum::middleware::from_fn(account::require_member))
        .route_layer(axum::middleware::from_fn(error::json_errors));

    let pages = Router::new()
        .merge(account)
        .merge(direct_uploads)
        .route("/", get(profiles::list_profiles))
        .route("/signup", get(signup::show_signup).post(signup::signup))
        .route("/profiles/{id}", get(profiles::show_profile))
        .route("/login", get(login::show_login).post(login::login))
        .route("/logout", post(login::logout));
    // Pages read the session, its member and the CSRF cookie; ended sessions end here.
    let with_session = |routes: Router<AppState>| {
        routes
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(limits),
                sessions::enforce_lifetimes,
            ))
            .layer(auth_layer.clone())
            .layer(axum::middleware::from_fn_with_state(
                csrf_settings.clone(),
                csrf::layer,
            ))
    };
    // `/resume/{id}` takes its own lane, and these layers only when it must (see `resume`).
    let resume_lane = Arc::new(resume::Lane::new(
        &state,
        with_session(Router::new().route("/resume/{id}", get(resume::redirect_to_resume)))
            .layer(axum::middleware::from_fn(resume::read_with_session))
            .with_state(state.clone()),
    ));

    let mut routes = Router::new().merge(with_session(pages)).route(
        "/resume/{id}",
        get(move |State(state): State<AppState>, request: Request| {
            resume::open(resume_lane.clone(), state, request)
        }),
    );
    if state.config.media.url.starts_with('/') {
        routes = routes.route(&media_route, get(media::serve_media));
    }
    let routes = routes
        // Public, for people outside the site: no session is read.
        .route("/s/{token}", get(share::open_link).head(share::peek_link))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .nest_service("/static", static_files)
        .fallback(|| async { AppError::NotFound })
        .layer(axum::middleware::from_fn(name_route))
        .with_state(state.clone());

    // What every request passes through wraps the routed app once (see `edge`), rather than
    // each route as `Router::layer` would.
    Router::new().fallback_service(edge::Edge::new(&state, routes))
}

/// The folder of static files as written, served at `/static/` after the collected ones.
const STATIC_SOURCE: &str = "static";

/// `/static/`: the collected assets when they are on this filesystem, then `static/` itself;
/// compressed (gzip, brotli) with ETags. Hashed names are cached for a year; anything else is
/// revalidated.
fn static_service(state: &AppState) -> Router {
    let source = ServeDir::new(STATIC_SOURCE);
    let statics = &state.config.statics;
    let files = if statics.backend == StorageBackend::Filesystem && state.statics.is_collected() {
        let collected = statics.root.join(&state.config.media.assets_prefix);
        Router::new().fallback_service(ServeDir::new(collected).fallback(source))
    } else {
        Router::new().fallback_service(source)
    };
    files
        .layer(axum::middleware::from_fn_with_state(
            state.statics.clone(),
            static_cache_control,
        ))
        .layer(CompressionLayer::new())
}

async fn static_cache_control(
    axum::extract::State(site): axum::extract::State<Arc<StaticSite>>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let hashed = site.is_hashed(request.uri().path().trim_start_matches('/'));
    let mut response = next.run(request).await;
    let value = if hashed {
        crate::statics::IMMUTABLE
    } else {
        crate::statics::NO_CACHE
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    response
}

/// The route a request matched, named in its span and, for the log line (see [`edge`]), in
/// the response; the one layer on every route, since the edge runs before routing.
async fn name_route(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    // The nested static service matches no route of its own: name it by its prefix.
    let route = if request.uri().path().starts_with("/static/") {
        Some(RouteName::Static)
    } else {
        request
            .extensions()
            .get::<MatchedPath>()
            .cloned()
            .map(RouteName::Matched)
    };
    if let Some(route) = &route {
        tracing::Span::current().record("http.route", route.as_str());
    }
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// The route a response answered, for the request's log line.
#[derive(Clone)]
enum RouteName {
    Matched(MatchedPath),
    Static,
}

impl RouteName {
    fn as_str(&self) -> &str {
        match self {
            RouteName::Matched(path) => path.as_str(),
            RouteName::Static => "/static/{*file}",
        }
    }
}

/// How long a client may take to send a request's headers, and how long a kept-alive
/// connection may sit idle before its next request (hyper times both from the moment it
/// starts waiting for a request head). A client that sends headers a byte a second is cut off
/// here instead of holding a connection for ever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How a server stops, and how many connections it holds meanwhile: see [`serve`].
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Set at the signal; `/readyz` then answers 503 and answers close their connections.
    pub draining: health::Draining,
    /// How long the listener stays open after the signal (`SHUTDOWN_DRAIN_SECS`).
    pub drain: Duration,
    /// How long in-flight requests may then finish (`SHUTDOWN_GRACE_SECS`).
    pub grace: Duration,
    /// The most connections open at once (`MAX_CONNECTIONS`); more wait in the backlog.
    pub max_connections: usize,
}

/// How long a connection may go without a request before it is closed (gracefully: a
/// request still running finishes). This is what ends an HTTP/2 connection, which a client
/// can keep open for ever by answering pings. An HTTP/1 connection that has served a request
/// is left to hyper's header-read timeout, which starts once its answer is written: closing it
/// from here, timed from when the handler returned, would race a client reusing it.
pub const CONNECTION_IDLE: Duration = HEADER_READ_TIMEOUT;

/// What one connection is doing: its requests in flight, when it last started or ended one,
/// and whether it has served one over HTTP/1.
#[derive(Debug)]
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    since: std::sync::Mutex<tokio::time::Instant>,
    http1: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            since: std::sync::Mutex::new(tokio::time::Instant::now()),
            http1: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Notes the protocol of a request the connection carries.
    fn saw(&self, version: axum::http::Version) {
        if version < axum::http::Version::HTTP_2 {
            self.http1.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn touch(&self) {
        if let Ok(mut since) = self.since.lock() {
            *since = tokio::time::Instant::now();
        }
    }

    /// When the connection will have been idle for [`CONNECTION_IDLE`], or `None` while a
    /// request runs or once it has served HTTP/1 (see [`CONNECTION_IDLE`]).
    fn idle_at(&self) -> Option<tokio::time::Instant> {
        if self.in_flight.load(std::sync::atomic::Ordering::Acquire) > 0
            || self.http1.load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        self.since.lock().ok().map(|since| *since + CONNECTION_IDLE)
    }
}

/// Counts a request in flight on its connection until its answer is ready.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.touch();
        activity
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` until SIGTERM or SIGINT. Then it drains: for `drain` it goes on
/// accepting while `/readyz` answers 503 (a load balancer's health checks take the instance out
/// of rotation, so no request is sent to a closed port); then it stops accepting, lets
/// in-flight requests finish for up to `grace`, and returns; whatever still runs is dropped
/// with the runtime (temporary files are removed as it is).
///
/// The accept loop is hyper-util's rather than `axum::serve`, which offers no header-read
/// timeout: every connection gets [`HEADER_READ_TIMEOUT`], [`CONNECTION_IDLE`] and
/// `TCP_NODELAY`, and at most `max_connections` are open at once: past that, a new one waits
/// in the kernel's backlog until another closes, so a flood of connections costs the
/// process no memory.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let Shutdown {
        draining,
        drain,
        grace,
        max_connections,
    } = shutdown;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    // Cancelled when the listener closes: every connection then finishes what it runs and ends.
    let stopping = tokio_util::sync::CancellationToken::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    // Held so that what is still running when the grace period ends can be stopped here, while
    // the runtime still runs the clean-up it starts (see `storage::cleanup_tasks`).
    let mut connections = tokio::task::JoinSet::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    // Armed at the signal: when the drain is over.
    let drained = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drained);
    loop {
        while connections.try_join_next().is_some() {}
        let next = async {
            // A place first, then the connection: past the limit, clients wait in the backlog.
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            (listener.accept().await, permit)
        };
        let ((tcp, peer), permit) = tokio::select! {
            () = &mut signal, if !draining.is_on() => {
                draining.start();
                if drain.is_zero() {
                    break;
                }
                tracing::info!(drain_secs = drain.as_secs(), "draining: /readyz answers 503 until the listener closes");
                drained.as_mut().reset(tokio::time::Instant::now() + drain);
                continue;
            }
            () = &mut drained, if draining.is_on() => break,
            (accepted, permit) = next => match accepted {
                Ok(accepted) => (accepted, permit),
                Err(err) => {
                    // Out of file descriptors and the like: wait a little, as axum::serve does.
                    tracing::warn!(error = %err, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small answers (redirects, health checks) leave at once, not after a delayed ACK.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        let activity = Activity::new();
        let service = {
            let (activity, seen) = (activity.clone(), activity.clone());
            app.clone()
                .map_request(
                    move |mut request: axum::http::Request<hyper::body::Incoming>| {
                        seen.saw(request.version());
                        request.extensions_mut().insert(ConnectInfo(peer));
                        request
                    },
                )
                .map_future(move |answer| {
                    let counted = InFlight::start(&activity);
                    async move {
                        let answer = answer.await;
                        drop(counted);
                        answer
                    }
                })
        };
        let builder = builder.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            let _permit = permit;
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(tcp),
                TowerToHyperService::new(service),
            );
            tokio::pin!(connection);
            let mut closing = false;
            loop {
                let idle_at = activity
                    .idle_at()
                    .unwrap_or_else(|| tokio::time::Instant::now() + CONNECTION_IDLE);
                tokio::select! {
                    ended = connection.as_mut() => {
                        if let Err(err) = ended {
                            tracing::debug!(error = %err, "connection ended with an error");
                        }
                        return;
                    }
                    () = stopping.cancelled(), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    () = tokio::time::sleep_until(idle_at), if !closing => {
                        if activity.idle_at().is_some_and(|at| at <= tokio::time::Instant::now()) {
                            connection.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    stopping.cancel();
    let finished = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, finished).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still running when SHUTDOWN_GRACE_SECS ran out; stopping them"
        );
        connections.shutdown().await;
    }
    finish_cleanup().await;
    Ok(())
}

/// Waits (5 s at most) for the clean-up that stopped requests started: aborting unfinished
/// S3 multipart uploads, so none is left behind by a shutdown.
async fn finish_cleanup() {
    let tasks = crate::storage::cleanup_tasks();
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("clean-up of stopped uploads did not finish within 5 s");
    }
    tasks.reopen();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received, draining connections");
}
