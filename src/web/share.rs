//! Share links: `/s/{token}` serves a member's current resume to someone outside the site,
//! for a while and a number of times the member chose, until they revoke it.
//!
//! The token is 256 random bits, shown once when the link is made and stored only as its
//! SHA-256. Opening a link counts the download in the same statement that checks it, then
//! redirects to a presigned URL valid [`SHARE_URL_TTL`]; a revoked, expired or used-up link,
//! or one whose resume was deleted, answers 410 and never the resume. Nothing about links is
//! cached, so a revocation holds on every instance at once.

use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::account::{edit_page, own_profile};
use super::csrf::Csrf;
use super::profiles::parse_id;
use super::proxy::ClientInfo;
use super::{AppError, AppState};
use crate::auth::AuthSession;
use crate::db::downloads::Download;
use crate::db::now;
use crate::db::share_links::Opened;

/// How long the URL a share link redirects to is valid.
pub const SHARE_URL_TTL: Duration = Duration::from_secs(60);
/// The longest a link may last, and what the form offers first (days).
pub const MAX_DAYS: i64 = 30;
pub const DEFAULT_DAYS: i64 = 7;
/// The most downloads a link may allow.
pub const MAX_DOWNLOADS: i64 = 1000;
/// The most links of one member that may be open at once.
pub const MAX_ACTIVE_LINKS: i64 = 20;
/// A token: 32 random bytes, in lowercase hex.
const TOKEN_LEN: usize = 64;

#[derive(Deserialize)]
pub struct NewLinkForm {
    csrf_token: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    max_downloads: String,
}

/// A new link's settings, checked.
#[derive(Debug, PartialEq, Eq)]
struct NewLink {
    label: String,
    days: i64,
    max_downloads: Option<i64>,
}

fn check(form: &NewLinkForm) -> Result<NewLink, String> {
    let label = form.label.trim();
    if label.is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err("Give the link a label of 1 to 100 characters, such as who it is for.".into());
    }
    let days = match form.days.trim() {
        "" => DEFAULT_DAYS,
        raw => raw
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=MAX_DAYS).contains(d))
            .ok_or(format!("A link lasts 1 to {MAX_DAYS} days."))?,
    };
    let max_downloads = match form.max_downloads.trim() {
        "" => None,
        raw => Some(
            raw.parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_DOWNLOADS).contains(n))
                .ok_or(format!(
                    "The number of downloads is 1 to {MAX_DOWNLOADS}, or empty for no limit."
                ))?,
        ),
    };
    Ok(NewLink {
        label: label.to_owned(),
        days,
        max_downloads,
    })
}

/// `https://host` as the member's browser reached the site.
fn origin(request_host: Option<String>, client: Option<&ClientInfo>) -> String {
    let scheme = if client.is_some_and(|c| c.https) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", request_host.unwrap_or_default())
}

/// `POST /profile/share-links`: makes a link to the member's current resume and shows it,
/// once, on the edit page.
pub async fn create_link(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    client: Option<Extension<ClientInfo>>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<axum::Form<NewLinkForm>, FormRejection>,
) -> Result<Response, AppError> {
    let axum::Form(form) = form?;
    csrf.verify(&auth, &form.csrf_token)?;
    let profile = own_profile(&auth, &state).await?;
    let checked = match check(&form) {
        Err(why) => Err((StatusCode::UNPROCESSABLE_ENTITY, why)),
        Ok(_) if profile.resume_key.is_none() => Err((
            StatusCode::CONFLICT,
            "Upload a resume first: a share link serves your current resume.".to_owned(),
        )),
        Ok(link) => {
            let active = state.db.count_active_share_links(profile.user_id).await?;
            if active >= MAX_ACTIVE_LINKS {
                Err((
                    StatusCode::CONFLICT,
                    format!(
                        "You have {active} share links open, the most allowed. Revoke one first."
                    ),
                ))
            } else {
                Ok(link)
            }
        }
    };
    let link = match checked {
        Ok(link) => link,
        Err((status, why)) => {
            return edit_page(&auth, &csrf, &state, status, Some(why), None).await;
        }
    };
    let token = hex::encode(rand::random::<[u8; 32]>());
    let expires_at = now() + link.days * 86_400;
    state
        .db
        .create_share_link(
            profile.user_id,
            &token,
            &link.label,
            expires_at,
            link.max_downloads,
        )
        .await?;
    tracing::info!(
        event = "share_link.created",
        user.id = profile.user_id,
        days = link.days,
        max_downloads = link.max_downloads,
        "share link created"
    );
    let host = super::proxy::request_host(&headers, &uri).map(|a| a.to_string());
    let url = format!("{}/s/{token}", origin(host, client.as_deref()));
    super::account::edit_page_with_link(&auth, &csrf, &state, url).await
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf_token: String,
}

/// `POST /profile/share-links/{id}/revoke`: ends one of the member's links.
pub async fn revoke_link(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    form: Result<axum::Form<RevokeForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, AppError> {
    let axum::Form(form) = form?;
    csrf.verify(&auth, &form.csrf_token)?;
    let id = parse_id(&raw_id)?;
    let user = auth.user.as_ref().ok_or(AppError::LoginRequired {
        next: "/profile/edit".into(),
    })?;
    // Another member's link is "not found", as if it did not exist.
    if !state.db.revoke_share_link(user.id, id).await? {
        return Err(AppError::NotFound);
    }
    tracing::info!(
        event = "share_link.revoked",
        user.id = user.id,
        link.id = id,
        "share link revoked"
    );
    Ok(Redirect::to("/profile/edit?saved=link-revoked").into_response())
}

/// Whether `raw` could be a token this site made; anything else is not looked up.
fn is_token(raw: &str) -> bool {
    raw.len() == TOKEN_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `GET /s/{token}`: anyone holding a live link is redirected to the resume, for
/// [`SHARE_URL_TTL`], under its original filename.
pub async fn open_link(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if !is_token(&token) {
        return Err(AppError::NotFound);
    }
    let (resume, profile_id, link_id, label) = match state.db.open_share_link(&token).await? {
        Opened::Resume {
            resume,
            profile_id,
            link_id,
            label,
        } => (resume, profile_id, link_id, label),
        Opened::Gone => return Err(AppError::LinkGone),
        Opened::Unknown => return Err(AppError::NotFound),
    };
    let download = Download {
        profile_id,
        member_id: None,
        share_link_id: Some(link_id),
        who: label,
        request_id: super::request_id(&headers),
        at: now(),
    };
    let mut response =
        super::resume::redirect_to_signed(&state, resume, SHARE_URL_TTL, download).await?;
    // The token is in this page's URL: never pass it on, never index it.
    let headers = response.headers_mut();
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::HeaderName::from_static("x-robots-tag"),
        HeaderValue::from_static("noindex"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(label: &str, days: &str, max: &str) -> NewLinkForm {
        NewLinkForm {
            csrf_token: String::new(),
            label: label.into(),
            days: days.into(),
            max_downloads: max.into(),
        }
    }

    #[test]
    fn new_links_are_checked() {
        assert_eq!(
            check(&form(" Acme recruiting ", "", "")),
            Ok(NewLink {
                label: "Acme recruiting".into(),
                days: DEFAULT_DAYS,
                max_downloads: None
            })
        );
        assert_eq!(
            check(&form("a", "30", "1000")).unwrap().max_downloads,
            Some(1000)
        );
        for bad in [
            form("", "7", ""),
            form(&"x".repeat(101), "7", ""),
            form("tab\there", "7", ""),
            form("a", "0", ""),
            form("a", "31", ""),
            form("a", "7.5", ""),
            form("a", "7", "0"),
            form("a", "7", "1001"),
            form("a", "7", "-1"),
        ] {
            assert!(
                check(&bad).is_err(),
                "{:?}",
                (bad.label, bad.days, bad.max_downloads)
            );
        }
    }

    #[test]
    fn only_token_shaped_paths_are_looked_up() {
        let token = hex::encode([0xa7u8; 32]);
        assert!(is_token(&token));
        assert!(!is_token(&token[..63]));
        assert!(!is_token(&format!("{token}a")));
        assert!(!is_token(&token.to_uppercase()));
        assert!(!is_token(&token.replace('7', "%")));
        assert!(!is_token(""));
    }
}
