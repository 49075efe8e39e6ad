//! The member directory and profile pages.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use serde::Deserialize;

use super::csrf::Csrf;
use super::proxy::SiteOrigin;
use super::templates::{AvatarView, DirectoryPage, Nav, ProfilePage, ProfileView, render};
use super::{AppError, AppState};
use crate::auth::AuthSession;
use crate::db::ProfileRow;
use crate::db::profiles::Toward;
use crate::media::keys::{avatar_sides, avatar_size_key};

/// The navigation bar for this request; a sign-out token only for signed-in members.
pub(super) fn nav(auth: &AuthSession, csrf: &Csrf, state: &AppState) -> Nav {
    match &auth.user {
        Some(user) => Nav {
            username: Some(user.username.clone()),
            csrf_token: csrf.token(auth),
            signup: false,
            statics: state.statics.clone(),
        },
        None => Nav {
            signup: state.config.uploads.allow_signup,
            statics: state.statics.clone(),
            ..Nav::default()
        },
    }
}

/// Parses a numeric id from the path: ASCII digits only, positive, fits in `i64`. Anything else
/// (`-1`, `1e3`, Unicode digits, overflow) is simply not a page: 404.
pub(super) fn parse_id(raw: &str) -> Result<i64, AppError> {
    if raw.is_empty() || raw.len() > 18 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::NotFound);
    }
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(AppError::NotFound),
    }
}

/// How pages show a profile's avatar: every stored size, each by its public URL.
pub(super) fn avatar_view(state: &AppState, row: &ProfileRow) -> Option<AvatarView> {
    let key = row.avatar_key.as_deref()?;
    let url = |key: &str| {
        state
            .storages
            .public
            .url(key)
            .map_err(|e| tracing::warn!(profile.id = row.id, error = %e, "avatar without a URL"))
            .ok()
    };
    let sides = avatar_sides(row.avatar_sizes.as_deref());
    let Some(&smallest) = sides.first() else {
        return url(key).map(|src| AvatarView {
            src,
            srcset: String::new(),
        });
    };
    let mut srcset = Vec::with_capacity(sides.len());
    for side in &sides {
        srcset.push(format!("{} {side}w", url(&avatar_size_key(key, *side))?));
    }
    Some(AvatarView {
        src: url(&avatar_size_key(key, smallest))?,
        srcset: srcset.join(", "),
    })
}

fn view(state: &AppState, row: ProfileRow) -> ProfileView {
    let avatar = avatar_view(state, &row);
    ProfileView {
        id: row.id,
        initial: row
            .display_name
            .chars()
            .next()
            .map(|c| c.to_uppercase().to_string())
            .unwrap_or_default(),
        display_name: row.display_name,
        username: row.username,
        avatar,
        has_resume: row.resume_key.is_some(),
    }
}

/// Members a directory page lists.
const DIRECTORY_PAGE: i64 = 48;
/// The longest name key a page's link may carry (a display name is at most 100 characters).
const MOST_KEY_BYTES: usize = 1024;

/// Where a directory page starts: `?after=KEY&id=ID` (the page after that member), or
/// `?before=KEY&id=ID` (the page before); neither for the first page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DirectoryQuery {
    after: Option<String>,
    before: Option<String>,
    id: Option<String>,
}

fn bad_link() -> AppError {
    AppError::BadRequest(
        "This directory page's link is not valid: start from the first page.".into(),
    )
}

/// A page's link: the page `direction` (`after` or `before`) of the member `id` whose name
/// key is `key`.
fn page_link(direction: &str, key: &str, id: i64) -> String {
    let key: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
    format!("/?{direction}={key}&id={id}")
}

/// `GET /`: the member directory, a page of [`DIRECTORY_PAGE`] members in display-name order,
/// with links to the pages before and after. No page grows with the number of members.
pub async fn list_profiles(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    query: Result<Query<DirectoryQuery>, QueryRejection>,
) -> Result<Html<String>, AppError> {
    let Query(query) = query.map_err(|_| bad_link())?;
    let cursor = |key: &String| -> Result<(String, i64), AppError> {
        let id = query.id.as_deref().and_then(|id| parse_id(id).ok());
        match id {
            Some(id) if key.len() <= MOST_KEY_BYTES => Ok((key.clone(), id)),
            _ => Err(bad_link()),
        }
    };
    let (from, toward) = match (&query.after, &query.before) {
        (None, None) if query.id.is_none() => (None, Toward::Later),
        (Some(key), None) => (Some(cursor(key)?), Toward::Later),
        (None, Some(key)) => (Some(cursor(key)?), Toward::Earlier),
        _ => return Err(bad_link()),
    };
    let from_ref = from.as_ref().map(|(key, id)| (key.as_str(), *id));
    let mut rows = state
        .db
        .directory_page(from_ref, toward, DIRECTORY_PAGE + 1)
        .await?;
    // One more than a page was asked for: whether there is more that way.
    let more = rows.len() as i64 > DIRECTORY_PAGE;
    if more {
        match toward {
            Toward::Later => rows.truncate(DIRECTORY_PAGE as usize),
            Toward::Earlier => drop(rows.remove(0)),
        }
    }
    let (has_earlier, has_later) = match toward {
        Toward::Later => (from.is_some(), more),
        Toward::Earlier => (more, true),
    };
    let earlier = rows
        .first()
        .filter(|_| has_earlier)
        .map(|(row, key)| page_link("before", key, row.id));
    let later = rows
        .last()
        .filter(|_| has_later)
        .map(|(row, key)| page_link("after", key, row.id));
    let profiles = rows.into_iter().map(|(row, _)| view(&state, row)).collect();
    render(&DirectoryPage {
        nav: nav(&auth, &csrf, &state),
        profiles,
        first_page: from.is_none(),
        earlier,
        later,
    })
}

pub async fn show_profile(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
    SiteOrigin(origin): SiteOrigin,
    Path(raw_id): Path<String>,
) -> Result<Html<String>, AppError> {
    let id = parse_id(&raw_id)?;
    let row = state.db.find_profile(id).await?.ok_or(AppError::NotFound)?;
    let profile = view(&state, row);
    render(&ProfilePage {
        canonical_url: format!("{origin}/profiles/{id}"),
        show_resume_link: auth.user.is_some() && profile.has_resume,
        nav: nav(&auth, &csrf, &state),
        profile,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_id;

    #[test]
    fn only_plain_positive_numbers_are_ids() {
        assert_eq!(parse_id("42").unwrap(), 42);
        for bad in [
            "",
            "0",
            "-1",
            "1e3",
            "+1",
            " 1",
            "9223372036854775808",
            "1;drop table",
            "١٢",
        ] {
            assert!(parse_id(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
