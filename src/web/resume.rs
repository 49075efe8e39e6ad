//! `/resume/{id}`: the members-only link that answers with a fresh presigned redirect.

use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::profiles::parse_id;
use super::{AppError, AppState};
use crate::auth::AuthSession;
use crate::db::downloads::Download;
use crate::db::{ResumeRef, now, prefetch};
use crate::storage::SignedUrlOptions;

/// Lets the session look-up of a `/resume/{id}` request read the resume in the same statement
/// as the session and its member (see [`crate::db::prefetch`]): one database round trip for
/// the whole request when nothing is cached. Any other page gets the session and the member.
pub async fn read_with_session(request: Request, next: Next) -> Response {
    let wanted = request
        .uri()
        .path()
        .strip_prefix("/resume/")
        .and_then(|raw| parse_id(raw).ok());
    prefetch::scope(wanted, next.run(request)).await
}

/// Redirects a signed-in member to a short-lived signed URL of the resume, downloaded under its
/// original filename. Visitors get a 403 page offering to sign in; the body never names the
/// object or the storage.
pub async fn redirect_to_resume(
    auth: AuthSession,
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let id = parse_id(&raw_id)?;
    let Some(user) = &auth.user else {
        return Err(AppError::LoginRequired {
            next: format!("/resume/{id}"),
        });
    };
    let resume = state.db.find_resume(id).await?.ok_or(AppError::NotFound)?;
    let download = Download {
        profile_id: id,
        member_id: Some(user.id),
        share_link_id: None,
        who: user.username.clone(),
        request_id: super::request_id(&headers),
        at: now(),
    };
    redirect_to_signed(
        &state,
        resume,
        state.config.media.querystring_expire,
        download,
    )
    .await
}

/// A `302` to a URL of `resume` signed for `ttl`, downloaded under its original filename, with
/// `Cache-Control: no-store`; `download` goes to the download log (see
/// [`crate::db::downloads`]). The end of `/resume/{id}` and of a share link.
pub(super) async fn redirect_to_signed(
    state: &AppState,
    resume: ResumeRef,
    ttl: Duration,
    download: Download,
) -> Result<Response, AppError> {
    let url = state.storages.private.signed_url(
        &resume.resume_key,
        &SignedUrlOptions {
            ttl,
            download_filename: Some(resume.resume_filename),
            content_type: Some("application/pdf".to_owned()),
        },
    )?;
    let location = HeaderValue::try_from(url).map_err(|e| {
        AppError::Internal(anyhow::Error::new(e).context("a signed URL is not a header value"))
    })?;
    state.downloads.record(download).await;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}
