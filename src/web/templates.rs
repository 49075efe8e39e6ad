//! One askama struct per page. Templates live in `templates/` and are compiled in.

use std::sync::Arc;

use askama::Template;
use axum::response::Html;

use super::AppError;
use crate::statics::StaticSite;

/// Renders a page, turning a template failure into a logged 500 instead of a panic.
pub fn render<T: Template>(page: &T) -> Result<Html<String>, AppError> {
    Ok(Html(page.render()?))
}

/// What the navigation bar shows.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    /// The signed-in member's username.
    pub username: Option<String>,
    /// The session's CSRF token, for the sign-out form (only when signed in).
    pub csrf_token: String,
    /// Whether to offer the sign-up link (visitors, when `ALLOW_SIGNUP` is on).
    pub signup: bool,
    /// Where the stylesheet, script and icon are linked from (hashed names once collected).
    pub statics: Arc<StaticSite>,
}

/// An avatar as an `<img>` shows it: `src` its smallest size, and `srcset` every size with
/// its width, so a browser fetches the one the page's 96 CSS px need on its screen.
#[derive(Debug, Clone)]
pub struct AvatarView {
    pub src: String,
    /// Empty for an avatar stored at one size only.
    pub srcset: String,
}

/// A profile as listed or shown.
#[derive(Debug, Clone)]
pub struct ProfileView {
    pub id: i64,
    pub display_name: String,
    pub username: String,
    pub avatar: Option<AvatarView>,
    /// Shown in place of a missing avatar.
    pub initial: String,
    pub has_resume: bool,
}

#[derive(Template)]
#[template(path = "directory.html")]
pub struct DirectoryPage {
    pub nav: Nav,
    pub profiles: Vec<ProfileView>,
    /// Whether this is the directory's first page (where an empty one means no members).
    pub first_page: bool,
    /// The links of the pages before and after this one, where there are such pages.
    pub earlier: Option<String>,
    pub later: Option<String>,
}

#[derive(Template)]
#[template(path = "profile.html")]
pub struct ProfilePage {
    pub nav: Nav,
    /// The page's absolute URL (https behind a trusted https proxy), for links that are shared.
    pub canonical_url: String,
    pub profile: ProfileView,
    /// Only signed-in members see the resume link.
    pub show_resume_link: bool,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub nav: Nav,
    pub csrf_token: String,
    pub username: String,
    pub next: String,
    pub error: Option<&'static str>,
}

#[derive(Clone, Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// Empty: error pages do not touch the session.
    pub nav: Nav,
    pub status: u16,
    pub title: &'static str,
    pub message: String,
    /// When set, the page offers a login link returning to this path.
    pub login_next: Option<String>,
}

#[derive(Template)]
#[template(path = "signup.html")]
pub struct SignupPage {
    pub nav: Nav,
    pub csrf_token: String,
    pub username: String,
    pub display_name: String,
    pub errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "edit_profile.html")]
pub struct EditProfilePage {
    pub nav: Nav,
    pub csrf_token: String,
    pub profile_id: i64,
    pub display_name: String,
    pub avatar: Option<AvatarView>,
    pub resume_filename: Option<String>,
    pub resume_size: Option<String>,
    pub resume_uploaded: Option<String>,
    pub avatar_limit: String,
    pub resume_limit: String,
    /// Whether the resume form may go straight to S3 (see `static/js/direct-upload.js`).
    pub direct_uploads: bool,
    pub share_links: Vec<super::account::ShareLinkView>,
    /// A link just made: its URL, shown this once.
    pub new_link: Option<String>,
    /// The latest downloads of the member's resume, and how many there are in all.
    pub downloads: Vec<super::account::DownloadView>,
    pub download_total: i64,
    pub share_days: i64,
    pub share_max_days: i64,
    pub error: Option<String>,
    pub notice: Option<&'static str>,
}

/// `/profile/delete`: the form (password again), or what is left once the account is gone.
#[derive(Template)]
#[template(path = "delete_account.html")]
pub struct DeleteAccountPage {
    pub nav: Nav,
    pub csrf_token: String,
    pub errors: Vec<String>,
    pub deleted: bool,
    /// Objects storage did not delete yet (retried until it does).
    pub pending: usize,
}

#[derive(Template)]
#[template(path = "password.html")]
pub struct PasswordPage {
    pub nav: Nav,
    pub csrf_token: String,
    pub errors: Vec<String>,
}
