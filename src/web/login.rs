//! Signing in and out.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::templates::{LoginPage, render};
use super::{AppError, AppState, csrf, profiles::nav};
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
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, AppError> {
    let page = LoginPage {
        nav: nav(&auth, &state).await?,
        csrf_token: csrf::token(&auth.session).await?,
        username: String::new(),
        next: safe_next(&query.next).to_owned(),
        error: None,
    };
    Ok(render(&page)?.into_response())
}

pub async fn login(
    mut auth: AuthSession,
    State(state): State<AppState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form.map_err(|e| AppError::BadRequest(e.body_text()))?;
    csrf::verify(&auth.session, &form.csrf_token).await?;
    let next = safe_next(&form.next).to_owned();
    let creds = Credentials {
        username: form.username.trim().to_owned(),
        password: form.password,
    };
    let user = auth
        .authenticate(creds.clone())
        .await
        .map_err(|e| AppError::Unavailable {
            what: "database",
            source: anyhow::anyhow!("{e}"),
        })?;
    let Some(user) = user else {
        let page = LoginPage {
            nav: nav(&auth, &state).await?,
            csrf_token: csrf::token(&auth.session).await?,
            username: creds.username,
            next,
            error: Some("That username and password do not match a member. Please try again."),
        };
        return Ok((StatusCode::UNAUTHORIZED, render(&page)?).into_response());
    };
    // Signing in renews the session id (session fixation); the form token is renewed too.
    auth.login(&user).await.map_err(|e| AppError::Unavailable {
        what: "database",
        source: anyhow::anyhow!("{e}"),
    })?;
    csrf::rotate(&auth.session).await?;
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
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form.map_err(|e| AppError::BadRequest(e.body_text()))?;
    csrf::verify(&auth.session, &form.csrf_token).await?;
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
