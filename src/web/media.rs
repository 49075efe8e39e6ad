//! `/media/…` for the filesystem backend: the backend decides what a request may read (see
//! `storage::filesystem::MediaFiles`); this module answers with the file, its headers and
//! a page a person understands when the answer is no.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::{AppError, AppState};
use crate::storage::filesystem::MediaRefusal;

pub async fn serve_media(
    State(state): State<AppState>,
    Path(path): Path<String>,
    RawQuery(raw_query): RawQuery,
    request: Request,
) -> Result<Response, AppError> {
    let Some(files) = &state.storages.media_files else {
        return Err(AppError::NotFound);
    };
    let read = files
        .authorize(&path, raw_query.as_deref(), SystemTime::now())
        .map_err(|refusal| match refusal {
            MediaRefusal::NotFound => AppError::NotFound,
            MediaRefusal::Private => AppError::Forbidden(
                "This file is private: it can only be opened through a members' link.",
            ),
            MediaRefusal::Invalid => AppError::Forbidden("This link is not valid."),
            MediaRefusal::Expired => AppError::Forbidden(
                "This link has expired. Go back to the profile and follow the link again.",
            ),
        })?;
    let cache_control = if read.signed {
        HeaderValue::from_static("private, no-store")
    } else {
        state.media_cache_control.clone()
    };

    let (parts, _) = request.into_parts();
    let forwarded = Request::from_parts(parts, Body::empty());
    let mut response = ServeFile::new(read.file)
        .oneshot(forwarded)
        .await
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("serving a media file")))?
        .map(Body::new);
    if !response.status().is_success() {
        if response.status() == StatusCode::NOT_FOUND {
            return Err(AppError::NotFound);
        }
        return Ok(response.into_response());
    }
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, cache_control);
    if let Some(value) = read.disposition.and_then(|d| HeaderValue::try_from(d).ok()) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Some(value) = read
        .content_type
        .and_then(|t| HeaderValue::try_from(t).ok())
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}
