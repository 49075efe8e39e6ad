//! `/signup`: a visitor becomes a member (when `ALLOW_SIGNUP` is on) and is signed in.

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::profiles::nav;
use super::templates::{SignupPage, render};
use super::{AppError, AppState, csrf};
use crate::auth::{AuthSession, User, hash_password, validate_password, validate_username};
use crate::db::DbError;

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
    if state.settings.uploads.allow_signup {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

async fn page(
    auth: &AuthSession,
    state: &AppState,
    status: StatusCode,
    form: &SignupForm,
    errors: Vec<String>,
) -> Result<Response, AppError> {
    let page = SignupPage {
        nav: nav(auth, state).await?,
        csrf_token: csrf::token(&auth.session).await?,
        username: form.username.clone(),
        display_name: form.display_name.clone(),
        errors,
    };
    Ok((status, render(&page)?).into_response())
}

pub async fn show_signup(
    auth: AuthSession,
    State(state): State<AppState>,
) -> Result<Response, AppError> {
    ensure_allowed(&state)?;
    page(
        &auth,
        &state,
        StatusCode::OK,
        &SignupForm::default(),
        Vec::new(),
    )
    .await
}

pub async fn signup(
    mut auth: AuthSession,
    State(state): State<AppState>,
    form: Result<Form<SignupForm>, FormRejection>,
) -> Result<Response, AppError> {
    ensure_allowed(&state)?;
    let Form(mut form) = form.map_err(|e| AppError::BadRequest(e.body_text()))?;
    csrf::verify(&auth.session, &form.csrf_token).await?;
    form.username = form.username.trim().to_owned();
    form.display_name = form.display_name.trim().to_owned();

    let mut errors = Vec::new();
    if let Err(message) = validate_username(&form.username) {
        errors.push(message.to_owned());
    }
    if let Err(message) = validate_password(&form.password) {
        errors.push(message.to_owned());
    } else if form.password != form.password2 {
        errors.push("The two passwords differ.".to_owned());
    }
    if form.display_name.chars().count() > 100 || form.display_name.chars().any(char::is_control) {
        errors.push("Display names are at most 100 characters, without control characters.".into());
    }
    if !errors.is_empty() {
        return page(
            &auth,
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            &form,
            errors,
        )
        .await;
    }

    let hash = hash_password(form.password.clone())
        .await
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("hashing a password")))?;
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
    auth.login(&user).await.map_err(|e| AppError::Unavailable {
        what: "database",
        source: anyhow::anyhow!("{e}"),
    })?;
    csrf::rotate(&auth.session).await?;
    tracing::info!(user.id = user.id, "member signed up");
    Ok(Redirect::to("/profile/edit").into_response())
}
