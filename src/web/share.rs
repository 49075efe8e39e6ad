//! Share links: `/s/{token}` serves a member's current resume to someone outside the site,
//! for a while and a number of times the member chose, until they revoke it.
//!
//! The token is 256 random bits, shown once when the link is made and stored only as its
//! SHA-256. Opening a link reads it, makes the redirect to a presigned URL valid
//! [`SHARE_URL_TTL`], and only then counts the download, in one statement that checks the
//! limit again; `HEAD` and link previews count nothing. A revoked, expired or used-up link,
//! or one whose resume was deleted, answers 410 and never the resume. Nothing about links is
//! cached, so a revocation holds on every instance at once.

use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::account::{edit_page, own_profile};
use super::csrf::Csrf;
use super::profiles::parse_id;
use super::proxy::SiteOrigin;
use super::{AppError, AppState};
use crate::auth::AuthSession;
use crate::db::downloads::Download;
use crate::db::share_links::{Counted, Opened};
use crate::db::{ResumeRef, now};

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

/// `POST /profile/share-links`: makes a link to the member's current resume and shows it,
/// once, on the edit page.
pub async fn create_link(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    SiteOrigin(origin): SiteOrigin,
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
    let url = format!("{origin}/s/{token}");
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
/// [`SHARE_URL_TTL`], under its original filename. The download is counted (and logged) only
/// once the redirect is made, and a link preview (a chat app fetching the URL to show a card)
/// gets a page of its own that counts nothing.
pub async fn open_link(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let (resume, profile_id, link_id, label) = find_link(&state, &token).await?;
    if is_link_preview(&headers) {
        return Ok(no_referrer((StatusCode::OK, Html(PREVIEW)).into_response()));
    }
    let response = super::resume::signed_redirect(&state, resume, SHARE_URL_TTL)?;
    match state.db.count_share_link_download(link_id).await? {
        Counted::Counted => {}
        Counted::Gone => return Err(AppError::LinkGone),
        Counted::Busy => return Err(AppError::Busy),
    }
    state
        .downloads
        .record(Download {
            profile_id,
            member_id: None,
            share_link_id: Some(link_id),
            who: label,
            request_id: super::request_id(&headers),
            at: now(),
        })
        .await;
    Ok(no_referrer(response))
}

/// `HEAD /s/{token}`: whether the link opens (200, 410 or 404), with no body, nothing signed
/// and nothing counted. Without it axum would run the `GET` and spend a download on a client
/// that only asked whether the URL exists.
pub async fn peek_link(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    find_link(&state, &token).await?;
    Ok(no_referrer(StatusCode::OK.into_response()))
}

/// The live link whose token is `token`: its resume, profile id, id and label.
async fn find_link(
    state: &AppState,
    token: &str,
) -> Result<(ResumeRef, i64, i64, String), AppError> {
    if !is_token(token) {
        return Err(AppError::NotFound);
    }
    match state.db.find_share_link(token).await? {
        Opened::Resume {
            resume,
            profile_id,
            link_id,
            label,
        } => Ok((resume, profile_id, link_id, label)),
        Opened::Gone => Err(AppError::LinkGone),
        Opened::Unknown => Err(AppError::NotFound),
    }
}

/// What a link preview gets: no file, no name, nothing counted.
const PREVIEW: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"robots\" content=\"noindex\"><title>A shared resume</title></head>\
<body><p>A resume shared with you. Open this link in a browser to download it.</p></body></html>";

/// Whether the request comes from a chat or social app's link-preview fetcher (they name
/// themselves in `User-Agent`), which would otherwise spend one of the link's downloads each
/// time the link is pasted.
fn is_link_preview(headers: &HeaderMap) -> bool {
    const PREVIEWERS: [&str; 12] = [
        "slackbot",
        "slack-imgproxy",
        "discordbot",
        "twitterbot",
        "facebookexternalhit",
        "linkedinbot",
        "whatsapp",
        "telegrambot",
        "skypeuripreview",
        "microsoftpreview",
        "applebot",
        "mattermost",
    ];
    let Some(agent) = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let agent = agent.to_ascii_lowercase();
    PREVIEWERS.iter().any(|bot| agent.contains(bot))
}

/// The token is in this page's URL: never pass it on, never index it.
fn no_referrer(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::HeaderName::from_static("x-robots-tag"),
        HeaderValue::from_static("noindex"),
    );
    response
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
    fn link_previews_are_told_from_browsers() {
        let agent = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::USER_AGENT, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert!(is_link_preview(&agent(
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
        )));
        assert!(is_link_preview(&agent(
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
        )));
        assert!(!is_link_preview(&agent(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36"
        )));
        assert!(!is_link_preview(&HeaderMap::new()));
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
