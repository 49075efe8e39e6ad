//! The routes: which handler answers each path, under which layers.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use axum_login::AuthManagerLayerBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use super::{
    AppError, AppState, account, csrf, direct_upload, edge, error, health, login, media, own_data,
    password, profiles, resume, session_cookie_name, sessions, share, signup,
};
use crate::auth::Backend;
use crate::config::StorageBackend;
use crate::db::SqlSessionStore;
use crate::db::sessions::AUTH_DATA_KEY;
use crate::statics::{SERVED_AT, StaticSite};

/// The routes that take a file through the app: a raised body limit and `UPLOAD_TIMEOUT_SECS`.
pub(super) const AVATAR_UPLOAD: &str = "/profile/avatar";
pub(super) const RESUME_UPLOAD: &str = "/profile/resume";

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
        .nest_service(SERVED_AT.trim_end_matches('/'), static_files)
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
    let route = if request.uri().path().starts_with(SERVED_AT) {
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

/// The static files' route, as the log names it.
static STATIC_ROUTE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{SERVED_AT}{{*file}}"));

/// The route a response answered, for the request's log line.
#[derive(Clone)]
pub(super) enum RouteName {
    Matched(MatchedPath),
    Static,
}

impl RouteName {
    pub(super) fn as_str(&self) -> &str {
        match self {
            RouteName::Matched(path) => path.as_str(),
            RouteName::Static => &STATIC_ROUTE,
        }
    }
}
