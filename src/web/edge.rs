//! What every request passes through, before routing and after its handler: its id, its log
//! line and span, what is known of the client (see [`super::proxy`]), its time limit, and the
//! headers and error pages every answer gets.
//!
//! One service rather than a stack of ten `from_fn` and `map_response` layers: each of those
//! boxes the service under it and its own future on every request, which cost a fast route
//! (`/healthz`, a cached `/resume/{id}`) as much CPU as its handler. Here the steps read in the
//! order they run, and the request pays for one boxed future.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use super::error::{link_error_page_statics, replace_bare_server_errors};
use super::health::Draining;
use super::proxy::{self, ClientInfo};
use super::router::{AVATAR_UPLOAD, RESUME_UPLOAD, RouteName};
use super::security::HtmlHeaders;
use super::{AppError, AppState, REQUEST_ID};
use crate::config::Config;
use crate::statics::StaticSite;

/// The routed app with what every request passes through around it.
#[derive(Clone)]
pub struct Edge {
    routes: Router,
    parts: Arc<Parts>,
}

struct Parts {
    config: Arc<Config>,
    draining: Draining,
    html: HtmlHeaders,
    statics: Arc<StaticSite>,
}

impl Edge {
    pub fn new(state: &AppState, routes: Router) -> Self {
        Self {
            routes,
            parts: Arc::new(Parts {
                config: state.config.clone(),
                draining: state.draining.clone(),
                html: HtmlHeaders::new(&state.storages, &state.statics),
                statics: state.statics.clone(),
            }),
        }
    }
}

impl Service<Request> for Edge {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A router is always ready; `oneshot` below asks it all the same.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let routes = self.routes.clone();
        let parts = self.parts.clone();
        Box::pin(async move { Ok(parts.handle(routes, request).await) })
    }
}

impl Parts {
    async fn handle(&self, routes: Router, mut request: Request) -> Response {
        let started = Instant::now();
        let request_id = match request.headers().get(REQUEST_ID) {
            // A router in front (Heroku's, say) names the request; the log keeps its name, but
            // only in the router's shape: anything else a client sends would be kept in the
            // download log for a year and echoed back, at whatever size it came.
            Some(sent) if is_acceptable_request_id(sent.as_bytes()) => sent.clone(),
            _ => {
                let made = make_request_id();
                request.headers_mut().insert(REQUEST_ID, made.clone());
                made
            }
        };
        let peer = request
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let client = ClientInfo::of(request.headers(), peer, &self.config.server.proxies);
        request.extensions_mut().insert(client);
        let method = request.method().clone();
        let id = request_id.to_str().unwrap_or("");
        // The route is known once the request is routed (see `name_route`).
        let span = tracing::info_span!(
            "request",
            request.id = id,
            http.method = %method,
            http.route = tracing::field::Empty,
        );

        let mut response = match proxy::redirect_to_https(&self.config.server, client, &request) {
            Some(redirect) => redirect,
            None => self.time_limited(routes, request).instrument(span).await,
        };

        let response_ref = &mut response;
        let status = response_ref.status().as_u16();
        proxy::secure_response(&self.config.server, client, response_ref.headers_mut());
        let route = response_ref.extensions().get::<RouteName>();
        tracing::info!(
            request.id = id,
            http.method = %method,
            http.route = route.map_or("(unmatched)", RouteName::as_str),
            http.status = status,
            latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            client.addr = client.addr.map(tracing::field::display),
            https = client.https,
            "request"
        );
        let headers = response.headers_mut();
        if self.draining.is_on() {
            // Kept-alive connections move to other instances before this one stops listening.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if !headers.contains_key(REQUEST_ID) {
            headers.insert(REQUEST_ID, request_id);
        }
        response
    }

    /// The routed answer within its time limit, as every page's: `UPLOAD_TIMEOUT_SECS` for the
    /// two upload routes (their time is mostly the client sending the file: 408),
    /// `REQUEST_TIMEOUT_SECS` for the rest (503), so that a slow client or a hung dependency
    /// cannot hold a connection, or a shutdown, for ever. Then the headers every answer gets.
    async fn time_limited(&self, routes: Router, request: Request) -> Response {
        let upload = request.method() == Method::POST
            && matches!(request.uri().path(), AVATAR_UPLOAD | RESUME_UPLOAD);
        let limit = if upload {
            self.config.server.upload_timeout
        } else {
            self.config.server.request_timeout
        };
        let response = match tokio::time::timeout(limit, routes.oneshot(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => AppError::TimedOut { upload, limit }.into_response(),
        };
        let mut response =
            link_error_page_statics(&self.statics, replace_bare_server_errors(response));
        self.html.add_to(&mut response);
        response
            .headers_mut()
            .entry(header::X_CONTENT_TYPE_OPTIONS)
            .or_insert(HeaderValue::from_static("nosniff"));
        response
    }
}

/// The longest request id taken from a client (Heroku's router sends 20 to 200 characters).
const MAX_REQUEST_ID_LEN: usize = crate::db::downloads::REQUEST_ID_MAX_BYTES;

/// Whether a client's `X-Request-Id` is kept as the request's id: 1 to [`MAX_REQUEST_ID_LEN`]
/// characters of `[A-Za-z0-9._-]`, the shape routers send. Any other is replaced.
fn is_acceptable_request_id(sent: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&sent.len())
        && sent
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A request id: a random UUID (v4) as tower-http's `MakeRequestUuid` makes one, from the
/// thread's random generator rather than a `getrandom` system call per request.
fn make_request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buffer = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buffer))
        .expect("a UUID is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_router_shaped_request_ids_are_taken() {
        assert!(is_acceptable_request_id(b"7c1d9e0a-2b3c.4d_5E"));
        assert!(is_acceptable_request_id(&[b'a'; MAX_REQUEST_ID_LEN]));
        assert!(!is_acceptable_request_id(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
        assert!(!is_acceptable_request_id(b""));
        for bad in ["a b", "a/b", "a\"b", "a;b", "<script>", "id\t", "é"] {
            assert!(!is_acceptable_request_id(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn request_ids_are_fresh_random_uuids() {
        let ids: Vec<String> = (0..2)
            .map(|_| make_request_id().to_str().unwrap().to_owned())
            .collect();
        assert_ne!(ids[0], ids[1]);
        for id in ids {
            let parsed = uuid::Uuid::parse_str(&id).unwrap();
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(parsed.hyphenated().to_string(), id);
        }
    }
}
