//! A member's password: `/profile/password` (current password, the new one twice) and "sign
//! out everywhere" (`POST /profile/sessions/end`). Both end every other session of the
//! member on every instance at once: the session epoch is bumped in the database and every
//! instance drops its cached copy of the member (see [`crate::db::invalidation`]). The session
//! that asked continues, on a fresh id (Django's `update_session_auth_hash`).

use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::csrf::Csrf;
use super::profiles::nav;
use super::proxy::ClientInfo;
use super::sessions::sign_in;
use super::signup::hashing_failure;
use super::templates::{PasswordPage, render};
use super::{AppError, AppState};
use crate::auth::{AuthSession, User, validate_new_password};
use crate::db::UserRow;

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct PasswordForm {
    csrf_token: String,
    current_password: String,
    new_password: String,
    new_password2: String,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct EndSessionsForm {
    csrf_token: String,
}

fn page(
    auth: &AuthSession,
    csrf: &Csrf,
    state: &AppState,
    status: StatusCode,
    errors: Vec<String>,
) -> Result<Response, AppError> {
    let page = PasswordPage {
        nav: nav(auth, csrf, state),
        csrf_token: csrf.token(auth),
        errors,
    };
    Ok((status, render(&page)?).into_response())
}

pub(super) fn signed_in(auth: &AuthSession) -> Result<&User, AppError> {
    auth.user.as_ref().ok_or(AppError::LoginRequired {
        next: "/profile/password".into(),
    })
}

pub async fn show_change_password(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
) -> Result<Response, AppError> {
    page(&auth, &csrf, &state, StatusCode::OK, Vec::new())
}

/// The name the member shows, a hint for the password strength check.
async fn display_name(state: &AppState, user: &User) -> Result<String, AppError> {
    Ok(state
        .db
        .find_profile_of_user(user.id)
        .await?
        .map(|p| p.display_name)
        .unwrap_or_default())
}

/// Continues this session, on a fresh id, as the member whose sessions were just ended.
async fn carry_on(
    auth: &mut AuthSession,
    state: &AppState,
    row: Option<UserRow>,
    saved: &str,
) -> Result<Response, AppError> {
    let row = row.ok_or(AppError::NotFound)?;
    sign_in(auth, &User::from(row), state.session_limits()).await?;
    Ok(Redirect::to(&format!("/profile/edit?saved={saved}")).into_response())
}

/// Whether `password` is the signed-in member's, asked again before a change that needs more
/// than a session (a new password, an export, deleting the account). Guessing it from a
/// stolen session is guessing a password: throttled as signing in is, whose lock-out is the
/// error, but in the member's own re-check bucket, which no stranger can fill.
pub(super) async fn confirm_password(
    auth: &AuthSession,
    state: &AppState,
    user: &User,
    password: &str,
    client: Option<Extension<ClientInfo>>,
) -> Result<bool, AppError> {
    let address = client.and_then(|Extension(client)| client.addr);
    if let Some(locked) = state.throttle.attempt_recheck(user.id).await? {
        return Err(locked.into());
    }
    let matches = auth.backend.check_password(user.id, password).await?;
    if matches {
        state.throttle.recheck_succeeded(user.id).await?;
    } else {
        state.throttle.failed(&user.username, address);
    }
    Ok(matches)
}

pub async fn change_password(
    mut auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    client: Option<Extension<ClientInfo>>,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form?;
    csrf.verify(&auth, &form.csrf_token)?;
    let user = signed_in(&auth)?.clone();
    let matches = confirm_password(&auth, &state, &user, &form.current_password, client).await?;
    let mut errors = Vec::new();
    if !matches {
        errors.push("Your current password is not right. Please try again.".to_owned());
    } else if form.new_password != form.new_password2 {
        errors.push("The two new passwords differ.".to_owned());
    } else if form.new_password == form.current_password {
        errors.push("The new password is the one you have now.".to_owned());
    } else if let Err(message) = validate_new_password(
        &form.new_password,
        &user.username,
        &display_name(&state, &user).await?,
    ) {
        errors.push(message);
    }
    if !errors.is_empty() {
        return page(
            &auth,
            &csrf,
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            errors,
        );
    }
    let hash = state
        .hasher
        .hash(form.new_password)
        .await
        .map_err(hashing_failure)?;
    let row = state.db.set_password(user.id, &hash).await?;
    tracing::info!(user.id = user.id, "password changed; other sessions ended");
    carry_on(&mut auth, &state, row, "password").await
}

pub async fn sign_out_everywhere(
    mut auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    form: Result<Form<EndSessionsForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form?;
    csrf.verify(&auth, &form.csrf_token)?;
    let user_id = signed_in(&auth)?.id;
    let row = state.db.end_sessions_everywhere(user_id).await?;
    tracing::info!(user.id = user_id, "signed out everywhere else");
    carry_on(&mut auth, &state, row, "signed-out").await
}
