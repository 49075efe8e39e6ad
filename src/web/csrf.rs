//! CSRF protection without a database session: a signed double-submit cookie.
//!
//! Every browser gets a random nonce in a cookie (`stowage_csrf`, `__Host-stowage_csrf` in
//! production), set the first time a page puts a form token in. A form's token is an
//! HMAC-SHA256, keyed from `SECRET_KEY`, of that nonce and of who is asking: a visitor, or a
//! member with this session id. A state-changing POST must carry the token that its own
//! cookie and session give, compared in constant time. So:
//! - a visitor's form costs no database row (a bot fetching `/login` writes nothing);
//! - another site cannot forge a token: it can neither read the cookie nor compute the HMAC;
//! - a token stops working when the session changes: signing in (a fresh session id), signing
//!   out, or the session ending elsewhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::AppError;
use crate::auth::AuthSession;

/// The form field that carries the token.
pub const FIELD: &str = "csrf_token";

/// The cookie's name: with the `__Host-` prefix when cookies are `Secure`, so no other host
/// (a sibling subdomain) can plant a nonce of its choosing.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-stowage_csrf"
    } else {
        "stowage_csrf"
    }
}

/// The key tokens are signed with, derived from `SECRET_KEY` for this use alone.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey([redacted])")
    }
}

impl CsrfKey {
    pub fn derive(secret_key: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret_key).expect("HMAC takes any key");
        mac.update(b"stowage csrf tokens v1");
        Self(mac.finalize().into_bytes().into())
    }
}

/// What [`layer`] needs: the key, and how to name and mark the cookie.
#[derive(Debug, Clone)]
pub struct CsrfSettings {
    pub key: CsrfKey,
    pub secure: bool,
}

/// This request's CSRF nonce; extract it in a handler to make or check tokens.
#[derive(Debug, Clone)]
pub struct Csrf {
    /// The cookie's nonce, or a fresh one made when first needed: most requests (a resume
    /// link, an image) never make or check a token.
    nonce: Arc<OnceLock<String>>,
    key: CsrfKey,
    /// Set when a token was handed out for a fresh nonce: the response must set the cookie.
    issued: Arc<AtomicBool>,
}

/// Who a token is for: a visitor, or a member on this session.
fn binding(auth: &AuthSession) -> String {
    match (&auth.user, auth.session.id()) {
        (Some(user), Some(id)) => format!("member {} session {id}", user.id),
        _ => "visitor".to_owned(),
    }
}

impl Csrf {
    fn new(nonce: Option<String>, key: CsrfKey) -> Self {
        Self {
            nonce: Arc::new(nonce.map(OnceLock::from).unwrap_or_default()),
            key,
            issued: Arc::new(AtomicBool::new(false)),
        }
    }

    fn nonce(&self) -> &str {
        self.nonce
            .get_or_init(|| hex::encode(rand::random::<[u8; 32]>()))
    }

    fn sign(&self, binding: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key.0).expect("HMAC takes any key");
        mac.update(self.nonce().as_bytes());
        mac.update(b"\n");
        mac.update(binding.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The token forms of this page carry.
    pub fn token(&self, auth: &AuthSession) -> String {
        self.issued.store(true, Ordering::Relaxed);
        self.sign(&binding(auth))
    }

    /// Refuses the request unless `submitted` is the token for this cookie and session.
    pub fn verify(&self, auth: &AuthSession, submitted: &str) -> Result<(), AppError> {
        let expected = self.sign(&binding(auth));
        if !submitted.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes())) {
            Ok(())
        } else {
            Err(AppError::Csrf)
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Csrf {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        parts
            .extensions
            .get::<Csrf>()
            .cloned()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the CSRF layer is not installed")))
    }
}

/// The nonce in the request's cookie, when it is one this site would have made.
fn nonce_from_cookies(request: &Request, name: &str) -> Option<String> {
    super::cookies(request.headers(), name)
        .next()
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

/// Gives every request its [`Csrf`], from the cookie or fresh; sets the cookie on the
/// response when a fresh nonce was used in a token.
pub async fn layer(
    State(settings): State<Arc<CsrfSettings>>,
    mut request: Request,
    next: Next,
) -> Response {
    let name = cookie_name(settings.secure);
    let nonce = nonce_from_cookies(&request, name);
    let fresh = nonce.is_none();
    let csrf = Csrf::new(nonce, settings.key.clone());
    request.extensions_mut().insert(csrf.clone());
    let mut response = next.run(request).await;
    if fresh && csrf.issued.load(Ordering::Relaxed) {
        // A year, as Django's CSRF cookie: a form left open overnight still posts.
        let secure = if settings.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{name}={}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax{secure}",
            csrf.nonce()
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_the_nonce_the_key_and_who_asks() {
        let csrf =
            |nonce: &str, secret: &[u8]| Csrf::new(Some(nonce.into()), CsrfKey::derive(secret));
        let a = csrf("aa", b"secret one");
        assert_eq!(a.sign("visitor"), csrf("aa", b"secret one").sign("visitor"));
        assert_ne!(a.sign("visitor"), csrf("ab", b"secret one").sign("visitor"));
        assert_ne!(a.sign("visitor"), csrf("aa", b"secret two").sign("visitor"));
        assert_ne!(a.sign("visitor"), a.sign("member 1 session x"));
        assert!(!format!("{:?}", CsrfKey::derive(b"secret one")).contains("secret"));
    }
}
