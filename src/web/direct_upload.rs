//! Direct-to-S3 resume uploads, for the edit page's script (`static/js/direct-upload.js`).
//! Heroku's router gives a request 30 s and holds its whole body, so a large file should not
//! pass through the app: the browser asks `GET /profile/resume/upload-url` for a presigned
//! POST, sends the file to S3 with it, then asks `POST /profile/resume/confirm` to check what
//! arrived and point the profile at it. Both answer JSON; without JavaScript, or on the
//! filesystem backend, the edit page's form streams the file through the app instead.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::account::{NOT_ISSUED, own_profile, refusal_status, store_failure};
use super::csrf::Csrf;
use super::{AppError, AppState};
use crate::auth::AuthSession;
use crate::media::checks::clean_filename;
use crate::media::{self, StoreError};
use crate::storage::StorageError;

/// A presigned POST: send `fields`, then the file as the field `file`, to `url`; then confirm
/// `key`.
#[derive(Debug, Serialize)]
struct Issued {
    key: String,
    url: String,
    fields: BTreeMap<String, String>,
    max_bytes: u64,
    expires_in: u64,
}

/// `{"error": "…"}` with a status: what the script shows the member.
fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

pub async fn issue(auth: AuthSession, State(state): State<AppState>) -> Result<Response, AppError> {
    let profile = own_profile(&auth, &state).await?;
    let max_bytes = state.config.uploads.resume_max_bytes;
    let ttl = state.config.uploads.direct_upload_expire;
    match media::issue_direct_upload(&state.db, &state.storages, profile.id, max_bytes, ttl).await {
        Ok((key, form)) => {
            let issued = Issued {
                key,
                url: form.url,
                fields: form.fields,
                max_bytes,
                expires_in: ttl.as_secs(),
            };
            let mut response = Json(issued).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        }
        Err(StoreError::Storage(StorageError::Unsupported(_))) => Ok(json_error(
            StatusCode::NOT_FOUND,
            "Direct uploads need the S3 storage backend; use the upload form.",
        )),
        Err(e) => Err(store_failure(e)),
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct ConfirmForm {
    csrf_token: String,
    key: String,
    /// The name the file had on the member's computer; kept, cleaned, for downloads.
    filename: String,
}

pub async fn confirm(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    form: Result<axum::Form<ConfirmForm>, FormRejection>,
) -> Result<Response, AppError> {
    let axum::Form(form) = form?;
    csrf.verify(&auth, &form.csrf_token)?;
    let profile = own_profile(&auth, &state).await?;
    let filename = clean_filename(&form.filename, "resume.pdf");
    let confirmed = media::confirm_direct_upload(
        &state.db,
        &state.storages,
        profile.id,
        &form.key,
        &filename,
        state.config.uploads.resume_max_bytes,
    )
    .await;
    match confirmed {
        Ok(key) => {
            tracing::info!(profile.id = profile.id, storage.key = %key, "resume uploaded directly");
            Ok(
                Json(serde_json::json!({ "redirect": "/profile/edit?saved=resume" }))
                    .into_response(),
            )
        }
        Err(StoreError::Refused(refusal)) => {
            Ok(json_error(refusal_status(&refusal), &refusal.to_string()))
        }
        Err(StoreError::NotIssued) => Ok(json_error(StatusCode::FORBIDDEN, NOT_ISSUED)),
        Err(e) => Err(store_failure(e)),
    }
}
