//! A member's own page: `/profile/edit`, and the forms that upload an avatar or a resume and
//! delete the resume. The forms are read here; storing goes through [`crate::media`].

use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::TryStreamExt;
use serde::Deserialize;

use super::csrf::{self, Csrf};
use super::profiles::nav;
use super::templates::{EditProfilePage, render};
use super::{AppError, AppState};
use crate::auth::AuthSession;
use crate::db::ProfileRow;
use crate::db::downloads::Download;
use crate::db::share_links::{LinkState, ShareLinkRow};
use crate::media::checks::{UploadError, clean_filename, human_size};
use crate::media::{self, StoreError};

#[derive(Debug, Default, Deserialize)]
pub struct EditQuery {
    #[serde(default)]
    saved: String,
}

/// Sends visitors to sign in first. A `GET` returns to the page asked for; a form post returns
/// to the edit page (303, so the browser does not re-send the upload to `/login`).
pub async fn require_member(auth: AuthSession, request: Request, next: Next) -> Response {
    if auth.user.is_some() {
        return next.run(request).await;
    }
    let back = if request.method() == Method::GET {
        request
            .uri()
            .path_and_query()
            .map_or("/profile/edit", |p| p.as_str())
    } else {
        "/profile/edit"
    };
    let next: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// The signed-in member's profile; the routes sit behind [`require_member`].
pub(super) async fn own_profile(
    auth: &AuthSession,
    state: &AppState,
) -> Result<ProfileRow, AppError> {
    let user = auth.user.as_ref().ok_or(AppError::LoginRequired {
        next: "/profile/edit".into(),
    })?;
    state
        .db
        .find_profile_of_user(user.id)
        .await?
        .ok_or(AppError::NotFound)
}

/// The edit page, with a message and the status that goes with it.
pub(super) async fn edit_page(
    auth: &AuthSession,
    csrf: &Csrf,
    state: &AppState,
    status: StatusCode,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Result<Response, AppError> {
    render_edit_page(auth, csrf, state, status, error, notice, None).await
}

/// The edit page showing a share link just made, the one time its URL is shown.
pub(super) async fn edit_page_with_link(
    auth: &AuthSession,
    csrf: &Csrf,
    state: &AppState,
    url: String,
) -> Result<Response, AppError> {
    let notice = Some("Share link created. Copy it now: it is shown only this once.");
    render_edit_page(auth, csrf, state, StatusCode::OK, None, notice, Some(url)).await
}

async fn render_edit_page(
    auth: &AuthSession,
    csrf: &Csrf,
    state: &AppState,
    status: StatusCode,
    error: Option<String>,
    notice: Option<&'static str>,
    new_link: Option<String>,
) -> Result<Response, AppError> {
    // The profile and the links at once: each statement's wait is a wake-up on a busy runtime.
    let links = async {
        match &auth.user {
            Some(user) => Ok(state.db.share_links_of(user.id).await?),
            None => Ok(Vec::new()),
        }
    };
    let (profile, share_links) = tokio::try_join!(own_profile(auth, state), links)?;
    let at = crate::db::now();
    let share_links = share_links
        .into_iter()
        .map(|link| ShareLinkView::of(link, at))
        .collect();
    let (recent, download_total) = state.db.downloads_of(profile.id, RECENT_DOWNLOADS).await?;
    let downloads = recent.into_iter().map(DownloadView::of).collect();
    let avatar = super::profiles::avatar_view(state, &profile);
    let page = EditProfilePage {
        nav: nav(auth, csrf, state),
        csrf_token: csrf.token(auth),
        display_name: profile.display_name,
        profile_id: profile.id,
        avatar,
        resume_filename: profile.resume_filename,
        resume_size: profile.resume_size.map(|s| human_size(s.max(0) as u64)),
        resume_uploaded: profile.resume_uploaded_at.and_then(format_date),
        avatar_limit: human_size(state.config.uploads.avatar_max_bytes),
        resume_limit: human_size(state.config.uploads.resume_max_bytes),
        direct_uploads: state.storages.private.direct_uploads().is_some(),
        share_links,
        new_link,
        downloads,
        download_total,
        share_days: super::share::DEFAULT_DAYS,
        share_max_days: super::share::MAX_DAYS,
        error,
        notice,
    };
    Ok((status, render(&page)?).into_response())
}

/// How many of the latest downloads the edit page lists.
const RECENT_DOWNLOADS: i64 = 100;

/// A download of the member's resume, as the edit page lists it.
pub struct DownloadView {
    pub who: String,
    /// Whether it came through a share link (`who` is then its label).
    pub by_link: bool,
    pub when: String,
}

impl DownloadView {
    fn of(download: Download) -> Self {
        Self {
            who: download.who,
            by_link: download.share_link_id.is_some(),
            when: format_date(download.at).unwrap_or_default(),
        }
    }
}

/// A share link as the edit page lists it.
pub struct ShareLinkView {
    pub id: i64,
    pub label: String,
    pub created: String,
    pub expires: String,
    pub downloads: String,
    pub last_used: Option<String>,
    /// "active", "revoked", "expired" or "used up".
    pub state: &'static str,
}

impl ShareLinkView {
    fn of(link: ShareLinkRow, at: i64) -> Self {
        let state = match link.state(at) {
            LinkState::Active => "active",
            LinkState::Revoked => "revoked",
            LinkState::Expired => "expired",
            LinkState::UsedUp => "used up",
        };
        Self {
            id: link.id,
            label: link.label,
            created: format_date(link.created_at).unwrap_or_default(),
            expires: format_date(link.expires_at).unwrap_or_default(),
            downloads: match link.max_downloads {
                Some(max) => format!("{} of {max}", link.downloads),
                None => link.downloads.to_string(),
            },
            last_used: link.last_used_at.and_then(format_date),
            state,
        }
    }
}

fn format_date(unix: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp(unix).ok()?;
    at.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .ok()
}

pub async fn show_edit_profile(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    Query(query): Query<EditQuery>,
) -> Result<Response, AppError> {
    let notice = match query.saved.as_str() {
        "avatar" => Some("Your avatar was updated."),
        "resume" => Some("Your resume was uploaded."),
        "resume-deleted" => Some("Your resume was deleted."),
        "password" => Some("Your password was changed. Every other session has been signed out."),
        "signed-out" => Some("Every other session has been signed out."),
        "link-revoked" => Some("The share link was revoked: it no longer opens."),
        _ => None,
    };
    edit_page(&auth, &csrf, &state, StatusCode::OK, None, notice).await
}

/// A refused upload: the edit page again, with the reason and its status.
async fn refuse(
    auth: &AuthSession,
    csrf: &Csrf,
    state: &AppState,
    err: UploadError,
) -> Result<Response, AppError> {
    edit_page(
        auth,
        csrf,
        state,
        refusal_status(&err),
        Some(err.to_string()),
        None,
    )
    .await
}

/// The status of a refused upload: too large 413, wrong type 415, unusable 422.
pub(super) fn refusal_status(err: &UploadError) -> StatusCode {
    match err {
        UploadError::TooLarge { .. } | UploadError::TooManyPixels => StatusCode::PAYLOAD_TOO_LARGE,
        UploadError::WrongType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        UploadError::Empty
        | UploadError::Corrupt(_)
        | UploadError::NotReceived
        | UploadError::NotAnnounced => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

pub(super) const NOT_ISSUED: &str =
    "This upload was not issued to you, or it has expired. Please upload the file again.";

/// A store that failed for a reason other than the file itself.
pub(super) fn store_failure(err: StoreError) -> AppError {
    match err {
        StoreError::Refused(refusal) => AppError::BadRequest(refusal.to_string()),
        StoreError::Interrupted(_) => {
            AppError::BadRequest("The upload was interrupted before it was complete.".into())
        }
        StoreError::NotIssued => AppError::Forbidden(NOT_ISSUED),
        StoreError::Storage(e) => e.into(),
        StoreError::Db(e) => e.into(),
        StoreError::Failed => AppError::Internal(anyhow::anyhow!("processing an upload failed")),
        StoreError::Busy => AppError::Busy,
    }
}

/// A multipart error in words: a body over the route's limit is "too large", anything else is
/// a malformed request.
fn multipart_failure(err: &MultipartError, limit: u64) -> Result<UploadError, AppError> {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Ok(UploadError::too_large(limit))
    } else {
        Err(AppError::BadRequest(format!(
            "The upload could not be read: {}",
            err.body_text()
        )))
    }
}

/// Reads the form's CSRF token, which must come first so nothing is stored before it is
/// checked, then returns the file field named `name`.
async fn checked_file_field<'m>(
    auth: &AuthSession,
    csrf: &Csrf,
    multipart: &'m mut Multipart,
    name: &str,
    limit: u64,
) -> Result<Result<Field<'m>, UploadError>, AppError> {
    let first = match multipart.next_field().await {
        Ok(field) => field,
        Err(e) => return multipart_failure(&e, limit).map(Err),
    };
    let token = match first {
        Some(field) if field.name() == Some(csrf::FIELD) => match field.text().await {
            Ok(token) => token,
            Err(e) => return multipart_failure(&e, limit).map(Err),
        },
        _ => return Err(AppError::Csrf),
    };
    csrf.verify(auth, &token)?;
    match multipart.next_field().await {
        Ok(Some(field)) if field.name() == Some(name) => Ok(Ok(field)),
        Ok(_) => Ok(Err(UploadError::Empty)),
        Err(e) => multipart_failure(&e, limit).map(Err),
    }
}

fn multipart_or_bad_request(
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Multipart, AppError> {
    multipart
        .map_err(|e| AppError::BadRequest(format!("The form could not be read: {}", e.body_text())))
}

/// The answer to a store: back to the edit page with a notice, or the page again with the
/// reason the file was refused.
async fn answer_store<T>(
    auth: &AuthSession,
    csrf: &Csrf,
    state: &AppState,
    stored: Result<T, StoreError>,
    saved: &str,
) -> Result<Response, AppError> {
    match stored {
        Ok(_) => Ok(Redirect::to(&format!("/profile/edit?saved={saved}")).into_response()),
        Err(StoreError::Refused(refusal)) => refuse(auth, csrf, state, refusal).await,
        Err(e) => Err(store_failure(e)),
    }
}

pub async fn upload_resume(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, AppError> {
    let profile = own_profile(&auth, &state).await?;
    let limit = state.config.uploads.resume_max_bytes;
    let mut multipart = multipart_or_bad_request(multipart)?;
    let field = match checked_file_field(&auth, &csrf, &mut multipart, "resume", limit).await? {
        Ok(field) => field,
        Err(refusal) => return refuse(&auth, &csrf, &state, refusal).await,
    };
    let filename = clean_filename(field.file_name().unwrap_or(""), "resume.pdf");
    let body = field.map_err(move |e| match multipart_failure(&e, limit) {
        Ok(refusal) => std::io::Error::other(refusal),
        Err(_) => std::io::Error::other(e),
    });
    let stored = media::store_resume(
        &state.db,
        &state.storages,
        profile.id,
        body,
        &filename,
        limit,
    )
    .await;
    if let Ok(key) = &stored {
        tracing::info!(profile.id = profile.id, storage.key = %key, "resume uploaded");
    }
    answer_store(&auth, &csrf, &state, stored, "resume").await
}

pub async fn upload_avatar(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, AppError> {
    let profile = own_profile(&auth, &state).await?;
    let limit = state.config.uploads.avatar_max_bytes;
    let mut multipart = multipart_or_bad_request(multipart)?;
    let mut field = match checked_file_field(&auth, &csrf, &mut multipart, "avatar", limit).await? {
        Ok(field) => field,
        Err(refusal) => return refuse(&auth, &csrf, &state, refusal).await,
    };
    // An image is decoded whole anyway; read it, bounded by the limit.
    let mut bytes = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if (bytes.len() + chunk.len()) as u64 > limit {
                    return refuse(&auth, &csrf, &state, UploadError::too_large(limit)).await;
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                let refusal = multipart_failure(&e, limit)?;
                return refuse(&auth, &csrf, &state, refusal).await;
            }
        }
    }
    let stored = media::store_avatar(
        &state.db,
        &state.storages,
        &state.avatar_slots,
        profile.id,
        bytes,
        limit,
    )
    .await;
    answer_store(&auth, &csrf, &state, stored, "avatar").await
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct DeleteForm {
    csrf_token: String,
}

pub async fn delete_resume(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    form: Result<axum::Form<DeleteForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, AppError> {
    let axum::Form(form) = form?;
    csrf.verify(&auth, &form.csrf_token)?;
    let profile = own_profile(&auth, &state).await?;
    let deleted = media::delete_resume(&state.db, &state.storages, profile.id).await;
    answer_store(&auth, &csrf, &state, deleted, "resume-deleted").await
}
