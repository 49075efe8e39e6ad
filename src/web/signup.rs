//! `/signup`: a visitor becomes a member (when `ALLOW_SIGNUP` is on) and is signed in.

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
use super::templates::{SignupPage, render};
use super::{AppError, AppState};
use crate::auth::{AuthSession, User, validate_new_password, validate_username};
use crate::db::DbError;
use crate::slots::SlotError;

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct SignupForm {
    username: String,
    password: String,
    password2: String,
    display_name: String,
    csrf_token: String,
}

fn ensure_allowed(state: &AppState) -> Result<(), AppError> {
    if state.config.uploads.allow_signup {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

async fn page(
    auth: &AuthSession,
    csrf: &Csrf,
    state: &AppState,
    status: StatusCode,
    form: &SignupForm,
    errors: Vec<String>,
) -> Result<Response, AppError> {
    let page = SignupPage {
        nav: nav(auth, csrf, state),
        csrf_token: csrf.token(auth),
        username: form.username.clone(),
        display_name: form.display_name.clone(),
        errors,
    };
    Ok((status, render(&page)?).into_response())
}

pub async fn show_signup(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
) -> Result<Response, AppError> {
    ensure_allowed(&state)?;
    page(
        &auth,
        &csrf,
        &state,
        StatusCode::OK,
        &SignupForm::default(),
        Vec::new(),
    )
    .await
}

pub async fn signup(
    mut auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    client: Option<Extension<ClientInfo>>,
    form: Result<Form<SignupForm>, FormRejection>,
) -> Result<Response, AppError> {
    ensure_allowed(&state)?;
    let Form(mut form) = form?;
    csrf.verify(&auth, &form.csrf_token)?;
    let address = client.and_then(|Extension(client)| client.addr);
    if let Some(locked) = state.throttle.attempt_signup(address).await? {
        return Err(locked.into());
    }
    form.username = form.username.trim().to_owned();
    form.display_name = form.display_name.trim().to_owned();

    let mut errors = Vec::new();
    if let Err(message) = validate_username(&form.username) {
        errors.push(message.to_owned());
    }
    if form.password != form.password2 {
        errors.push("The two passwords differ.".to_owned());
    }
    if form.display_name.chars().count() > 100 || form.display_name.chars().any(char::is_control) {
        errors.push("Display names are at most 100 characters, without control characters.".into());
    }
    if errors.is_empty()
        && let Err(message) =
            validate_new_password(&form.password, &form.username, &form.display_name)
    {
        errors.push(message);
    }
    if !errors.is_empty() {
        return page(
            &auth,
            &csrf,
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            &form,
            errors,
        )
        .await;
    }

    let hash = state
        .hasher
        .hash(form.password.clone())
        .await
        .map_err(hashing_failure)?;
    let display_name = if form.display_name.is_empty() {
        form.username.clone()
    } else {
        form.display_name.clone()
    };
    let row = match state
        .db
        .create_user(&form.username, &hash, false, &display_name)
        .await
    {
        Ok(row) => row,
        Err(DbError::Conflict(_)) => {
            let errors = vec!["That username is taken. Please choose another.".to_owned()];
            return page(
                &auth,
                &csrf,
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                errors,
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    let user = User::from(row);
    sign_in(&mut auth, &user, state.session_limits()).await?;
    tracing::info!(user.id = user.id, "member signed up");
    Ok(Redirect::to("/profile/edit").into_response())
}

/// A hash that could not be computed: the slots were busy (503 with `Retry-After`), or the
/// task failed.
pub(super) fn hashing_failure(err: SlotError) -> AppError {
    match err {
        SlotError::Busy => AppError::Busy,
        SlotError::Failed => AppError::Internal(anyhow::anyhow!("hashing a password failed")),
    }
}
