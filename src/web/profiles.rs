//! The member directory and profile pages.

use axum::extract::{Path, State};
use axum::response::Html;

use super::csrf::Csrf;
use super::proxy::SiteOrigin;
use super::templates::{AvatarView, DirectoryPage, Nav, ProfilePage, ProfileView, render};
use super::{AppError, AppState};
use crate::auth::AuthSession;
use crate::db::ProfileRow;
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

pub async fn list_profiles(
    auth: AuthSession,
    csrf: Csrf,
    State(state): State<AppState>,
) -> Result<Html<String>, AppError> {
    let rows = state.db.list_profiles().await?;
    let profiles = rows.into_iter().map(|row| view(&state, row)).collect();
    render(&DirectoryPage {
        nav: nav(&auth, &csrf, &state),
        profiles,
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
