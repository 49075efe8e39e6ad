//! Direct-to-S3 resume uploads, for the edit page's script (`static/js/direct-upload.js`).
//! Heroku's router gives a request 30 s and holds its whole body, so a large file should not
//! pass through the app: the browser hashes the file, asks
//! `GET /profile/resume/upload-url?size=…&sha256=…` for a presigned POST or PUT
//! (`DIRECT_UPLOAD_METHOD`) for exactly that file, sends the file to S3 with it, then asks
//! `POST /profile/resume/confirm` to check what arrived and point the profile at it. Both
//! answer JSON; without JavaScript (or Web Crypto), or on the filesystem backend, the edit
//! page's form streams the file through the app instead.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::account::{NOT_ISSUED, own_profile, refusal_status, store_failure};
use super::csrf::Csrf;
use super::{AppError, AppState};
use crate::auth::AuthSession;
use crate::config::DirectUploadMethod;
use crate::media::checks::clean_filename;
use crate::media::{self, AnnouncedFile, StoreError};
use crate::storage::{Sha256Digest, StorageError};

/// An issued upload: with `method` `POST`, send `fields`, then the file as the field `file`,
/// to `url`; with `PUT`, send the file as the body to `url` with `headers`. Then confirm
/// `key`.
#[derive(Debug, Serialize)]
struct Issued {
    key: String,
    /// `POST` or `PUT`.
    method: &'static str,
    url: String,
    fields: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    max_bytes: u64,
    expires_in: u64,
}

/// The file the browser is about to upload.
#[derive(Debug, Deserialize)]
pub struct IssueQuery {
    /// Its length, in bytes.
    size: u64,
    /// Its SHA-256: standard base64 of the 32 bytes (as S3's `x-amz-checksum-sha256`).
    sha256: String,
}

/// `{"error": "…"}` with a status: what the script shows the member.
fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

pub async fn issue(
    auth: AuthSession,
    State(state): State<AppState>,
    query: Result<Query<IssueQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let profile = own_profile(&auth, &state).await?;
    let file = match query {
        Ok(Query(query)) => Sha256Digest::from_base64(&query.sha256).map(|sha256| AnnouncedFile {
            size: query.size,
            sha256,
        }),
        Err(_) => None,
    };
    let Some(file) = file else {
        return Ok(json_error(
            StatusCode::BAD_REQUEST,
            "Say which file you will upload: its size in bytes (size) and its SHA-256 in base64 (sha256).",
        ));
    };
    let uploads = &state.config.uploads;
    let (max_bytes, ttl) = (uploads.resume_max_bytes, uploads.direct_upload_expire);
    let issued = media::issue_direct_upload(
        &state.db,
        &state.storages,
        profile.id,
        file,
        uploads.direct_upload_method,
        max_bytes,
        ttl,
    )
    .await;
    match issued {
        Ok((key, upload)) => {
            let issued = Issued {
                key,
                method: match upload.method {
                    DirectUploadMethod::Post => "POST",
                    DirectUploadMethod::Put => "PUT",
                },
                url: upload.url,
                fields: upload.fields,
                headers: upload.headers,
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
        Err(StoreError::Refused(refusal)) => {
            Ok(json_error(refusal_status(&refusal), &refusal.to_string()))
        }
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
