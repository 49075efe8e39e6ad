//! `/resume/{id}`: the members-only link that answers with a fresh presigned redirect.
//!
//! The site's busiest route has a lane of its own. A request from a member whose session
//! needs nothing written (stamped, live, seen within the minute) and whose resume exists is
//! answered by [`open`] straight from the session store and the database's look-ups: the same
//! checks axum-login and [`super::sessions`] make, without the session, auth and CSRF layers
//! every page runs under, which cost as much CPU as the rest of the request. Anything else (a
//! visitor, a session to stamp, end or flush, a missing resume, an error) goes on to
//! [`redirect_to_resume`] under those layers, which answer it as any page would.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_login::AuthUser;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tower::ServiceExt;
use tower_sessions::SessionStore;
use tower_sessions::session::Id;

use super::profiles::parse_id;
use super::sessions::SessionLimits;
use super::{AppError, AppState};
use crate::auth::{AuthSession, User};
use crate::db::downloads::Download;
use crate::db::sessions::AUTH_DATA_KEY;
use crate::db::{ResumeRef, SqlSessionStore, now, prefetch};
use crate::storage::SignedUrlOptions;

/// What `/resume/{id}`'s own lane needs: the session store and cookie the session layer uses,
/// the session lifetimes, and the route under every page's layers for what it leaves.
pub struct Lane {
    store: SqlSessionStore,
    cookie: &'static str,
    limits: SessionLimits,
    under_layers: Router,
}

impl Lane {
    pub fn new(state: &AppState, under_layers: Router) -> Self {
        Self {
            store: SqlSessionStore::new(state.db.clone()),
            cookie: super::session_cookie_name(state.config.session_cookie_secure),
            limits: state.session_limits(),
            under_layers,
        }
    }
}

/// `/resume/{id}`: the redirect when [`Lane`] can answer it alone, else the route under every
/// page's layers.
pub async fn open(lane: Arc<Lane>, state: AppState, request: Request) -> Response {
    if let Some(response) = answer_alone(&lane, &state, request.uri(), request.headers()).await {
        return response;
    }
    match lane.under_layers.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// axum-login's record of the signed-in member in the session (its `Data`).
#[derive(serde::Deserialize)]
struct SignedIn {
    user_id: i64,
    auth_hash: Vec<u8>,
}

/// The redirect for a member whose session needs nothing written and whose resume exists;
/// `None` for anything else. The checks are axum-login's (the member exists and the session
/// is bound to their current password and session epoch) and [`super::sessions`]'s.
async fn answer_alone(
    lane: &Lane,
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<Response> {
    let id = parse_id(uri.path().strip_prefix("/resume/")?).ok()?;
    let mut sent = super::cookies(headers, lane.cookie);
    let session_id: Id = sent.next()?.parse().ok()?;
    if sent.next().is_some() {
        return None;
    }
    prefetch::scope(Some(id), async {
        let record = lane.store.load(&session_id).await.ok()??;
        if !lane.limits.leaves_unchanged(&record, now()) {
            return None;
        }
        let signed_in = SignedIn::deserialize(record.data.get(AUTH_DATA_KEY)?).ok()?;
        let user = User::from(state.db.find_user(signed_in.user_id).await.ok()??);
        if !bool::from(signed_in.auth_hash.ct_eq(user.session_auth_hash())) {
            return None;
        }
        let resume = state.db.find_resume(id).await.ok()??;
        let download = Download {
            profile_id: id,
            member_id: Some(user.id),
            share_link_id: None,
            who: user.username,
            request_id: super::request_id(headers),
            at: now(),
        };
        let ttl = state.config.media.querystring_expire;
        redirect_to_signed(state, resume, ttl, download).await.ok()
    })
    .await
}

/// Lets the session look-up of a `/resume/{id}` request read the resume in the same statement
/// as the session and its member (see [`crate::db::prefetch`]): one database round trip for
/// the whole request when nothing is cached, on either lane.
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
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    // From the path itself: called from [`open`], the route's parameters are counted twice.
    let id = parse_id(uri.path().trim_start_matches("/resume/"))?;
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
    let response = signed_redirect(state, resume, ttl)?;
    state.downloads.record(download).await;
    Ok(response)
}

/// The `302` of [`redirect_to_signed`], made and not yet logged: a share link counts its
/// download only once it has one.
pub(super) fn signed_redirect(
    state: &AppState,
    resume: ResumeRef,
    ttl: Duration,
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
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}
