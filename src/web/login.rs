//! Signing in and out. A sign-in is refused before any hashing while its username or
//! address is locked out (see [`crate::auth::throttle`]); each failure is counted.

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::csrf::Csrf;
use super::proxy::ClientInfo;
use super::sessions::sign_in;
use super::templates::{LoginPage, render};
use super::{AppError, AppState, profiles::nav};
use crate::auth::{AuthSession, Credentials};

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// The login form. Every field defaults to empty so a missing one gets a page, not a
/// deserialisation error.
#[derive(Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf_token: String,
    next: String,
}

/// `next` when it is a path on this site, else `/`. Refuses `//host`, `/\host`, schemes and
/// control characters, so a login link can never send a member off-site.
pub fn safe_next(next: &str) -> &str {
    let on_site = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 2048
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if on_site { next } else { "/" }
}

pub async fn show_login(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, AppError> {
    let page = LoginPage {
        nav: nav(&auth, &csrf, &state),
        csrf_token: csrf.token(&auth),
        username: String::new(),
        next: safe_next(&query.next).to_owned(),
        error: None,
    };
    Ok(render(&page)?.into_response())
}

/// What a failure of the auth backend means for the page.
pub(super) fn auth_failure(err: axum_login::Error<crate::auth::Backend>) -> AppError {
    match err {
        axum_login::Error::Backend(e) => e.into(),
        other => AppError::Unavailable {
            what: "database",
            source: anyhow::anyhow!("{other}"),
        },
    }
}

pub async fn login(
    mut auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    client: Option<Extension<ClientInfo>>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form?;
    csrf.verify(&auth, &form.csrf_token)?;
    let next = safe_next(&form.next).to_owned();
    let address = client.and_then(|Extension(client)| client.addr);
    let creds = Credentials {
        username: form.username.trim().to_owned(),
        password: form.password,
    };
    if let Some(locked) = state
        .throttle
        .attempt_login(&creds.username, address)
        .await?
    {
        return Err(locked.into());
    }
    let user = auth
        .authenticate(creds.clone())
        .await
        .map_err(auth_failure)?;
    let Some(user) = user else {
        state.throttle.failed(&creds.username, address);
        let page = LoginPage {
            nav: nav(&auth, &csrf, &state),
            csrf_token: csrf.token(&auth),
            username: creds.username,
            next,
            error: Some("That username and password do not match a member. Please try again."),
        };
        return Ok((StatusCode::UNAUTHORIZED, render(&page)?).into_response());
    };
    state.throttle.succeeded(&creds.username, address).await?;
    // A fresh session id, even over an existing sign-in (session fixation); form tokens are
    // bound to it, so they are renewed too.
    sign_in(&mut auth, &user, state.session_limits()).await?;
    state.db.record_login(user.id).await?;
    tracing::info!(user.id = user.id, "signed in");
    Ok(Redirect::to(&next).into_response())
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct LogoutForm {
    csrf_token: String,
}

pub async fn logout(
    mut auth: AuthSession,
    csrf: Csrf,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form?;
    csrf.verify(&auth, &form.csrf_token)?;
    auth.logout().await.map_err(|e| AppError::Unavailable {
        what: "database",
        source: anyhow::anyhow!("{e}"),
    })?;
    Ok(Redirect::to("/").into_response())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next("/resume/3"), "/resume/3");
        assert_eq!(safe_next("/profiles/1?x=1"), "/profiles/1?x=1");
        for bad in [
            "",
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "/ok\r\nSet-Cookie: x",
            "evil.example",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
    }
}
