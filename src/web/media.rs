//! `/media/…` for the filesystem backend: public files as they are, private files only through
//! a valid, unexpired signed URL (the same contract as an S3 presigned URL).

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::{AppError, AppState};
use crate::config::StorageBackend;
use crate::storage::filesystem::PRIVATE_LOCATION;
use crate::storage::signing::{SignatureError, SignedGrant};
use crate::storage::validate_key;

/// The query of a signed URL.
#[derive(Debug, Default)]
struct SignedQuery {
    expires: Option<String>,
    disposition: Option<String>,
    content_type: Option<String>,
    signature: Option<String>,
}

fn parse_query(raw: Option<&str>) -> Result<SignedQuery, AppError> {
    let mut query = SignedQuery::default();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let slot = match &*name {
            "expires" => &mut query.expires,
            "disposition" => &mut query.disposition,
            "content_type" => &mut query.content_type,
            "signature" => &mut query.signature,
            _ => continue,
        };
        // A parameter given twice is an edited link.
        if slot.replace(value.into_owned()).is_some() {
            return Err(AppError::Forbidden("This link is not valid."));
        }
    }
    Ok(query)
}

pub async fn serve_media(
    State(state): State<AppState>,
    Path(path): Path<String>,
    RawQuery(raw_query): RawQuery,
    request: Request,
) -> Result<Response, AppError> {
    if state.config.media.backend != StorageBackend::Filesystem {
        return Err(AppError::NotFound);
    }
    // `path` is already percent-decoded once: `%2e%2e` arrives as `..` and is refused here,
    // a double-encoded `%252e` arrives as `%2e` and is refused for its `%`.
    if validate_key(&path).is_err() || path.split('/').any(|seg| seg.starts_with('.')) {
        return Err(AppError::NotFound);
    }
    let query = parse_query(raw_query.as_deref())?;
    let is_private = path.split('/').next() == Some(PRIVATE_LOCATION);

    let (disposition, content_type, cache_control) = match &query.signature {
        Some(signature) => {
            let expires = query
                .expires
                .as_deref()
                .and_then(|e| e.parse::<u64>().ok())
                .ok_or(AppError::Forbidden("This link is not valid."))?;
            let grant = SignedGrant {
                path: path.clone(),
                expires,
                disposition: query.disposition.clone(),
                content_type: query.content_type.clone(),
            };
            state
                .storages
                .signer
                .verify(&grant, signature, SystemTime::now())
                .map_err(|e| match e {
                    SignatureError::Expired => AppError::Forbidden(
                        "This link has expired. Go back to the profile and follow the link again.",
                    ),
                    SignatureError::Invalid | SignatureError::Malformed => {
                        AppError::Forbidden("This link is not valid.")
                    }
                })?;
            (
                grant.disposition,
                grant.content_type,
                HeaderValue::from_static("private, no-store"),
            )
        }
        None if is_private => {
            return Err(AppError::Forbidden(
                "This file is private: it can only be opened through a members' link.",
            ));
        }
        None => (None, None, state.media_cache_control.clone()),
    };

    let file = state.config.media.root.join(&path);
    let (parts, _) = request.into_parts();
    let forwarded = Request::from_parts(parts, Body::empty());
    let mut response = ServeFile::new(file)
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
    if let Some(value) = disposition.and_then(|d| HeaderValue::try_from(d).ok()) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Some(value) = content_type.and_then(|t| HeaderValue::try_from(t).ok()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}
