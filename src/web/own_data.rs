//! A member's data as theirs: `/profile/export` hands all of it over as one ZIP, and
//! `/profile/delete` removes the account and everything of it. Both ask for the password
//! again (and a CSRF token): a session left open on a shared computer is not enough to take
//! or destroy a member's data.

use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use serde_json::json;

use super::csrf::Csrf;
use super::password::{confirm_password, signed_in};
use super::profiles::nav;
use super::proxy::ClientInfo;
use super::templates::{DeleteAccountPage, render};
use super::{AppError, AppState};
use crate::auth::AuthSession;
use crate::db::profiles::AccountRecord;
use crate::db::share_links::ShareLinkRow;
use crate::media::export::{ExportContent, ExportFile, downloads_json, zip_stream};

/// A form that asks for the password again.
#[derive(Default, Deserialize)]
#[serde(default)]
pub struct PasswordAgainForm {
    csrf_token: String,
    password: String,
}

const WRONG_PASSWORD: &str = "That is not your password. Please try again.";

fn delete_page(
    auth: &AuthSession,
    csrf: &Csrf,
    state: &AppState,
    status: StatusCode,
    errors: Vec<String>,
) -> Result<Response, AppError> {
    let page = DeleteAccountPage {
        nav: nav(auth, csrf, state),
        csrf_token: csrf.token(auth),
        errors,
        deleted: false,
        pending: 0,
    };
    Ok((status, render(&page)?).into_response())
}

pub async fn show_delete_account(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
) -> Result<Response, AppError> {
    delete_page(&auth, &csrf, &state, StatusCode::OK, Vec::new())
}

/// `POST /profile/delete`: with the password, deletes the account, its rows at once and its
/// objects as storage allows (see [`crate::media::delete_account`]); every session of the
/// member ends, this one included.
pub async fn delete_account(
    mut auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    client: Option<Extension<ClientInfo>>,
    form: Result<Form<PasswordAgainForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form?;
    csrf.verify(&auth, &form.csrf_token)?;
    let user = signed_in(&auth)?.clone();
    if !confirm_password(&auth, &state, &user, &form.password, client).await? {
        let errors = vec![WRONG_PASSWORD.to_owned()];
        return delete_page(
            &auth,
            &csrf,
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            errors,
        );
    }
    let pending = crate::media::delete_account(&state.db, &state.storages, user.id)
        .await?
        .ok_or(AppError::NotFound)?;
    tracing::info!(user.id = user.id, pending, "account deleted");
    // The session's row went with the account; this forgets it in the cookie and the cache.
    if let Err(e) = auth.logout().await {
        tracing::warn!(error = %e, "could not end the session of a deleted account");
    }
    let page = DeleteAccountPage {
        nav: nav(&auth, &csrf, &state),
        csrf_token: String::new(),
        errors: Vec::new(),
        deleted: true,
        pending,
    };
    Ok(render(&page)?.into_response())
}

/// `POST /profile/export`: with the password, the member's data as one ZIP, streamed: the
/// profile (`profile.json`), the avatar at its largest, the resume under its original name,
/// the share links and the download log (both ways). The objects are opened before the
/// answer starts, so storage being down is a 503, not a broken file.
pub async fn export(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    client: Option<Extension<ClientInfo>>,
    form: Result<Form<PasswordAgainForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form?;
    csrf.verify(&auth, &form.csrf_token)?;
    let user = signed_in(&auth)?.clone();
    // A place first: refused, nothing was counted or read.
    let permit = state
        .exports
        .clone()
        .try_acquire_owned()
        .map_err(|_| AppError::ExportsBusy)?;
    if !confirm_password(&auth, &state, &user, &form.password, client).await? {
        let error = Some(WRONG_PASSWORD.to_owned());
        return super::account::edit_page(
            &auth,
            &csrf,
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            error,
            None,
        )
        .await;
    }
    let record = state
        .db
        .account_record(user.id)
        .await?
        .ok_or(AppError::NotFound)?;
    let links = state.db.share_links_of(user.id).await?;

    let now = time::OffsetDateTime::now_utc();
    let mut files = Vec::new();
    let avatar_name = record.avatar_key.as_deref().map(|key| {
        let extension = key.rsplit_once('.').map_or("img", |(_, ext)| ext);
        format!("avatar.{extension}")
    });
    let resume_name = record.resume_filename.as_deref().map(|name| {
        format!(
            "resume/{}",
            crate::media::checks::clean_filename(name, "resume.pdf")
        )
    });
    let profile = profile_json(&record, avatar_name.as_deref(), resume_name.as_deref(), now);
    files.push(json_file("profile.json", &profile)?);
    if let (Some(key), Some(name)) = (&record.avatar_key, avatar_name) {
        let object = state.storages.public.open(key).await?;
        files.push(ExportFile {
            name,
            content: ExportContent::Stream(object.body),
        });
    }
    if let (Some(key), Some(name)) = (&record.resume_key, resume_name) {
        let object = state.storages.private.open(key).await?;
        files.push(ExportFile {
            name,
            content: ExportContent::Stream(object.body),
        });
    }
    let links: Vec<_> = links.iter().map(link_json).collect();
    files.push(json_file("share_links.json", &links)?);
    files.push(ExportFile {
        name: "downloads.json".into(),
        content: ExportContent::Stream(downloads_json(
            state.db.clone(),
            record.profile_id,
            user.id,
        )),
    });
    tracing::info!(user.id = user.id, "data exported");

    let filename = format!("stowage-{}-{}.zip", record.username, now.date());
    let disposition = crate::storage::content_disposition(&filename);
    // The export's place is held until its last byte is sent (or the client goes).
    let zip = futures_util::StreamExt::map(zip_stream(files, now), move |chunk| {
        let _held = &permit;
        chunk
    });
    let mut response = Body::from_stream(zip).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

fn json_file(name: &str, value: &impl serde::Serialize) -> Result<ExportFile, AppError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| AppError::Internal(e.into()))?;
    Ok(ExportFile {
        name: name.to_owned(),
        content: ExportContent::Bytes(bytes),
    })
}

/// Unix seconds as RFC 3339 (UTC).
fn iso(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn profile_json(
    record: &AccountRecord,
    avatar: Option<&str>,
    resume: Option<&str>,
    now: time::OffsetDateTime,
) -> serde_json::Value {
    json!({
        "exported_at": iso(now.unix_timestamp()),
        "username": record.username,
        "display_name": record.display_name,
        "staff": record.is_staff != 0,
        "joined_at": iso(record.joined_at),
        "last_login": record.last_login.and_then(iso),
        "avatar": avatar.map(|file| json!({
            "file": file,
            "content_type": record.avatar_content_type,
            "size": record.avatar_size,
            "sha256": record.avatar_sha256,
        })),
        "resume": resume.map(|file| json!({
            "file": file,
            "filename": record.resume_filename,
            "size": record.resume_size,
            "sha256": record.resume_sha256,
            "uploaded_at": record.resume_uploaded_at.and_then(iso),
        })),
    })
}

fn link_json(link: &ShareLinkRow) -> serde_json::Value {
    json!({
        "label": link.label,
        "created_at": iso(link.created_at),
        "expires_at": iso(link.expires_at),
        "max_downloads": link.max_downloads,
        "downloads": link.downloads,
        "last_used_at": link.last_used_at.and_then(iso),
        "revoked_at": link.revoked_at.and_then(iso),
    })
}
