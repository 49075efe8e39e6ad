//! Behind the platform's router: whether the client used https and who the client is.
//!
//! A Heroku-style router ends TLS and speaks plain http to the app, saying what it saw in
//! `X-Forwarded-Proto` and `X-Forwarded-For`. Those headers are believed only from a peer in
//! `TRUSTED_PROXIES`, or from any peer with `TRUST_PROXY=true` (only behind a router that
//! strips them); otherwise anyone could send them. Then `X-Forwarded-Proto: https` marks
//! cookies `Secure` and makes absolute URLs https, and the client address is the last
//! `X-Forwarded-For` entry that no trusted proxy appended (anything left of it is the client's
//! own say). `FORCE_HTTPS=true` redirects plain-http requests, as Django's
//! `SECURE_SSL_REDIRECT` and Rails' `force_ssl` do.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppError, AppState};
use crate::config::ServerConfig;
use crate::config::server::{TrustedProxies, is_within};

/// What is known of the client, put in each request's extensions by [`super::edge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client reached the site over https (per a trusted `X-Forwarded-Proto`).
    pub https: bool,
    /// The client's address: the trusted `X-Forwarded-For`, else the peer of the connection.
    pub addr: Option<IpAddr>,
}

impl ClientInfo {
    pub fn of(headers: &HeaderMap, peer: Option<IpAddr>, proxies: &TrustedProxies) -> Self {
        if !proxies.trusts(peer) {
            return Self {
                https: false,
                addr: peer,
            };
        }
        let https = last_value(headers, "x-forwarded-proto")
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
        let addr = forwarded_client(headers, proxies).or(peer);
        Self { https, addr }
    }

    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

/// The client per `X-Forwarded-For`: its last entry, or with `TRUSTED_PROXIES` the last one
/// that is not itself a trusted proxy (each proxy appends the address it took the request
/// from). An entry that is not an address ends the walk: nothing left of it can be told.
fn forwarded_client(headers: &HeaderMap, proxies: &TrustedProxies) -> Option<IpAddr> {
    let networks = match proxies {
        TrustedProxies::Within(networks) => networks.as_slice(),
        _ => return last_value(headers, "x-forwarded-for").and_then(|a| a.parse().ok()),
    };
    let mut client = None;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for hop in value.rsplit(',').map(str::trim) {
            let Ok(addr) = hop.parse::<IpAddr>() else {
                return client;
            };
            client = Some(addr);
            if !is_within(networks, addr) {
                return client;
            }
        }
    }
    client
}

/// The last comma-separated entry of the last such header: what the nearest proxy said.
fn last_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    value
        .rsplit(',')
        .next()
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Platform health checks come over plain http from inside; they are never redirected.
fn exempt_from_https_redirect(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// The request's [`ClientInfo`]: as [`super::edge`] put it in the extensions, or
/// worked out here when a request did not pass it (a router driven by `oneshot`).
fn client_info(
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
    proxies: &TrustedProxies,
) -> ClientInfo {
    extensions.get::<ClientInfo>().copied().unwrap_or_else(|| {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        ClientInfo::of(headers, peer, proxies)
    })
}

/// With `FORCE_HTTPS`, the redirect a plain-http request gets instead of an answer (health
/// checks excepted); `None` otherwise.
pub fn redirect_to_https(
    settings: &ServerConfig,
    client: ClientInfo,
    request: &Request,
) -> Option<Response> {
    (settings.force_https && !client.https && !exempt_from_https_redirect(request.uri().path()))
        .then(|| https_redirect(request))
}

/// On an answer to an https request: marks its cookies `Secure`, and with `FORCE_HTTPS` adds
/// `Strict-Transport-Security`.
pub fn secure_response(settings: &ServerConfig, client: ClientInfo, headers: &mut HeaderMap) {
    if client.https {
        mark_cookies_secure(headers);
        if settings.force_https {
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            );
        }
    }
}

/// 301 for reads, 308 otherwise so a form post keeps its method and body.
fn https_redirect(request: &Request) -> Response {
    let Some(host) = request_host(request.headers(), request.uri()) else {
        return AppError::BadRequest("The request names no valid host.".into()).into_response();
    };
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let status = if matches!(*request.method(), Method::GET | Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    match HeaderValue::try_from(format!("https://{host}{path}")) {
        Ok(location) => (status, [(header::LOCATION, location)]).into_response(),
        Err(_) => AppError::BadRequest("The request's path is not valid.".into()).into_response(),
    }
}

/// The host the client asked for, when it is a valid authority without user info.
pub(super) fn request_host(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<Authority> {
    let raw = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(Authority::as_str))?;
    let authority: Authority = raw.parse().ok()?;
    (!authority.as_str().contains('@')).then_some(authority)
}

/// Appends `; Secure` to every `Set-Cookie` that lacks it.
fn mark_cookies_secure(headers: &mut HeaderMap) {
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        let secure = cookie.to_str().ok().and_then(|text| {
            let has_flag = text
                .split(';')
                .any(|attr| attr.trim().eq_ignore_ascii_case("secure"));
            (!has_flag).then(|| HeaderValue::try_from(format!("{text}; Secure")).ok())?
        });
        headers.append(header::SET_COOKIE, secure.unwrap_or(cookie));
    }
}

/// This site's origin (`scheme://host`), the one base of every absolute URL the site hands
/// out: share links, a profile's canonical link. `SITE_URL` when set (production requires it);
/// in development, the origin the client asked for, or a `400` when its `Host` is not valid.
#[derive(Debug, Clone)]
pub struct SiteOrigin(pub String);

impl FromRequestParts<AppState> for SiteOrigin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(site) = &state.config.server.site_url {
            return Ok(Self(site.clone()));
        }
        let client = client_info(
            &parts.extensions,
            &parts.headers,
            &state.config.server.proxies,
        );
        let host = request_host(&parts.headers, &parts.uri)
            .ok_or_else(|| AppError::BadRequest("The request names no valid host.".into()))?;
        Ok(Self(format!("{}://{host}", client.scheme())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const PEER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));

    #[test]
    fn with_trusted_proxies_only_they_are_believed_and_skipped() {
        let proxies = TrustedProxies::Within(vec![
            "10.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        let sent = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7"),
        ]);
        // From a trusted proxy: the last hop that is not one of them.
        let client = ClientInfo::of(&sent, PEER, &proxies);
        assert_eq!(client.addr, Some("1.2.3.4".parse().unwrap()));
        assert!(client.https);
        // Straight from a client: its own headers are its own say.
        let direct: Option<IpAddr> = Some("5.5.5.5".parse().unwrap());
        let client = ClientInfo::of(&sent, direct, &proxies);
        assert_eq!(
            client,
            ClientInfo {
                https: false,
                addr: direct
            }
        );
        // Every hop a proxy: the first one.
        let all = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(
            ClientInfo::of(&all, PEER, &proxies).addr,
            Some("10.1.1.1".parse().unwrap())
        );
        // A hop that is not an address stops the walk at the last good one.
        let junk = headers(&[("x-forwarded-for", "junk, 10.2.2.2")]);
        assert_eq!(
            ClientInfo::of(&junk, PEER, &proxies).addr,
            Some("10.2.2.2".parse().unwrap())
        );
        // An IPv4-mapped IPv6 peer is its IPv4 address.
        let mapped: Option<IpAddr> = Some("::ffff:10.0.0.1".parse().unwrap());
        assert!(proxies.trusts(mapped));
    }

    #[test]
    fn forwarded_headers_are_ignored_unless_the_proxy_is_trusted() {
        let sent = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        assert_eq!(
            ClientInfo::of(&sent, PEER, &TrustedProxies::None),
            ClientInfo {
                https: false,
                addr: PEER
            }
        );
        assert_eq!(
            ClientInfo::of(&sent, PEER, &TrustedProxies::Any),
            ClientInfo {
                https: true,
                addr: Some("1.2.3.4".parse().unwrap())
            }
        );
    }

    #[test]
    fn the_nearest_proxy_has_the_last_word() {
        // The client claimed https and an address; the router appended what it saw.
        let sent = headers(&[
            ("x-forwarded-proto", "https, http"),
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
        ]);
        let client = ClientInfo::of(&sent, PEER, &TrustedProxies::Any);
        assert!(!client.https);
        assert_eq!(client.addr, Some("1.2.3.4".parse().unwrap()));
        let junk = headers(&[("x-forwarded-for", "not-an-address")]);
        assert_eq!(ClientInfo::of(&junk, PEER, &TrustedProxies::Any).addr, PEER);
    }

    #[test]
    fn cookies_gain_the_secure_flag_once() {
        let mut map = headers(&[
            ("set-cookie", "a=1; HttpOnly; SameSite=Lax"),
            ("set-cookie", "b=2; Secure"),
        ]);
        mark_cookies_secure(&mut map);
        let cookies: Vec<_> = map.get_all("set-cookie").iter().collect();
        assert_eq!(cookies[0], "a=1; HttpOnly; SameSite=Lax; Secure");
        assert_eq!(cookies[1], "b=2; Secure");
    }

    #[test]
    fn hosts_with_user_info_or_junk_are_refused() {
        let uri: axum::http::Uri = "/".parse().unwrap();
        for bad in ["evil.example@good", "a b", ""] {
            assert!(
                request_host(&headers(&[("host", bad)]), &uri).is_none(),
                "{bad}"
            );
        }
        assert_eq!(
            request_host(&headers(&[("host", "example.com:8443")]), &uri)
                .unwrap()
                .as_str(),
            "example.com:8443"
        );
    }
}
