//! The one web error type: a status, an HTML page a person understands, and for server-side
//! failures a generic message with the cause chain logged exactly once.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::auth::AuthError;
use crate::auth::throttle::Locked;
use crate::db::DbError;
use crate::storage::StorageError;

use super::templates::ErrorPage;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    /// A share link that was revoked, has expired, was used up, or whose resume is gone.
    #[error("share link no longer valid")]
    LinkGone,
    /// A members-only page for someone not signed in; offers the login link.
    #[error("sign-in required")]
    LoginRequired { next: String },
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("form token invalid")]
    Csrf,
    /// A name a unique constraint holds is taken (`what`: "username").
    #[error("{0} already taken")]
    Conflict(&'static str),
    /// The request ran past `REQUEST_TIMEOUT_SECS`, or an upload past `UPLOAD_TIMEOUT_SECS`.
    #[error("timed out after {} s", limit.as_secs())]
    TimedOut {
        upload: bool,
        limit: std::time::Duration,
    },
    /// Too many failed sign-ins (or sign-ups) for this username or address; nothing hashed.
    #[error("too many attempts; retry after {} s", retry_after.as_secs())]
    TooManyAttempts { retry_after: std::time::Duration },
    /// Every slot for expensive work (password hashing, image decoding) stayed busy.
    #[error("too busy")]
    Busy,
    /// `EXPORT_CONCURRENCY` exports are already streaming.
    #[error("too many exports at once")]
    ExportsBusy,
    #[error("{what} unavailable: {source}")]
    Unavailable {
        what: &'static str,
        #[source]
        source: anyhow::Error,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What an export refused for want of a place tells the client to wait, in seconds.
const EXPORT_RETRY_AFTER_SECS: u64 = 30;

/// By kind (see [`DbError`]): an outage is a 503, a missing row a 404, a taken name a 409,
/// and anything else a 500 with the cause logged.
impl From<DbError> for AppError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(_) | DbError::NotAnswering { .. } => AppError::Unavailable {
                what: "database",
                source: err.into(),
            },
            DbError::NotFound(_) => AppError::NotFound,
            DbError::Conflict(what) => AppError::Conflict(what),
            DbError::Failed(_) | DbError::Migrate(_) => AppError::Internal(err.into()),
        }
    }
}

impl From<Locked> for AppError {
    fn from(locked: Locked) -> Self {
        AppError::TooManyAttempts {
            retry_after: locked.retry_after,
        }
    }
}

impl From<AuthError> for AppError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Busy => AppError::Busy,
            AuthError::Db(e) => e.into(),
            AuthError::Failed => AppError::Internal(anyhow::anyhow!("password hashing failed")),
        }
    }
}

impl From<StorageError> for AppError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::NotFound(_) | StorageError::InvalidKey(_) => AppError::NotFound,
            err => AppError::Unavailable {
                what: "storage",
                source: err.into(),
            },
        }
    }
}

/// A form that is not one (wrong content type, a field missing or mistyped): a 400 saying so.
impl From<axum::extract::rejection::FormRejection> for AppError {
    fn from(rejection: axum::extract::rejection::FormRejection) -> Self {
        AppError::BadRequest(rejection.body_text())
    }
}

impl From<askama::Error> for AppError {
    fn from(err: askama::Error) -> Self {
        AppError::Internal(anyhow::Error::new(err).context("rendering a template"))
    }
}

/// Marks responses made by [`AppError`], so [`replace_bare_server_errors`] leaves them alone,
/// and carries their page, which [`link_error_page_statics`] renders again with the app's
/// static links (`None` once a layer has given it its final body).
#[derive(Clone)]
struct Rendered(Option<ErrorPage>);

impl AppError {
    fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::LinkGone => StatusCode::GONE,
            AppError::LoginRequired { .. } | AppError::Forbidden(_) | AppError::Csrf => {
                StatusCode::FORBIDDEN
            }
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TimedOut { upload: true, .. } => StatusCode::REQUEST_TIMEOUT,
            AppError::TimedOut { upload: false, .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Busy | AppError::ExportsBusy => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn page(&self) -> ErrorPage {
        let (title, message, login_next) = match self {
            AppError::NotFound => (
                "Not found",
                "There is nothing here. The link may be mistyped, or what it pointed to is gone."
                    .to_owned(),
                None,
            ),
            AppError::LinkGone => (
                "This link no longer works",
                "This share link was revoked, has expired, was used as many times as it \
                 allowed, or the resume it shared was deleted. Ask the person who sent it for \
                 a new one."
                    .to_owned(),
                None,
            ),
            AppError::LoginRequired { next } => (
                "Members only",
                "This file is available to signed-in members only.".to_owned(),
                Some(next.clone()),
            ),
            AppError::Forbidden(why) => ("Forbidden", (*why).to_owned(), None),
            AppError::BadRequest(why) => ("Bad request", why.clone(), None),
            AppError::Conflict(what) => (
                "Already taken",
                format!("That {what} is already taken. Go back and choose another."),
                None,
            ),
            AppError::Csrf => (
                "Form expired",
                "This form has expired or was not sent by this site. Go back, reload the page and try again."
                    .to_owned(),
                None,
            ),
            AppError::TimedOut { upload: true, limit } => (
                "Upload took too long",
                format!(
                    "Sending the file took longer than {} seconds, so it was stopped and \
                     nothing was saved. Try again on a faster connection or with a smaller file.",
                    limit.as_secs()
                ),
                None,
            ),
            AppError::TimedOut { upload: false, .. } => (
                "Took too long",
                "This page took too long to prepare. Please try again in a moment.".to_owned(),
                None,
            ),
            AppError::TooManyAttempts { retry_after } => (
                "Too many attempts",
                format!(
                    "There have been too many failed attempts for this account or from your \
                     network, so signing in is paused. Please try again in {}.",
                    in_words(*retry_after)
                ),
                None,
            ),
            AppError::ExportsBusy => (
                "Busy",
                "Other exports are being prepared right now. Please try again in a minute."
                    .to_owned(),
                None,
            ),
            AppError::Busy => (
                "Busy",
                "The server is busy right now. Please try again in a few seconds.".to_owned(),
                None,
            ),
            AppError::Unavailable { what, .. } => (
                "Temporarily unavailable",
                format!("The {what} is not answering right now. Please try again in a moment."),
                None,
            ),
            AppError::Internal(_) => (
                "Something went wrong",
                "Something went wrong on our side. Please try again later.".to_owned(),
                None,
            ),
        };
        ErrorPage {
            nav: super::templates::Nav::default(),
            status: self.status().as_u16(),
            title,
            message,
            login_next,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            AppError::Unavailable { what, source } => {
                tracing::error!(
                    dependency = what,
                    error = format!("{source:#}"),
                    "dependency failure"
                );
            }
            AppError::Internal(source) => {
                tracing::error!(error = format!("{source:#}"), "internal error");
            }
            AppError::TimedOut { upload, limit } => {
                tracing::warn!(upload, limit_secs = limit.as_secs(), "request timed out");
            }
            AppError::Busy => {
                tracing::warn!("refused: every slot for expensive work stayed busy");
            }
            _ => {}
        }
        let page = self.page();
        let mut response = (status, Html(render_error_page(&page))).into_response();
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body is not worth waiting for.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        let retry_after = match &self {
            AppError::TooManyAttempts { retry_after } => Some(retry_after.as_secs().max(1)),
            AppError::Busy => Some(crate::slots::SLOT_WAIT.as_secs()),
            AppError::ExportsBusy => Some(EXPORT_RETRY_AFTER_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response.extensions_mut().insert(Rendered(Some(page)));
        response
    }
}

fn render_error_page(page: &ErrorPage) -> String {
    page.render().unwrap_or_else(|_| {
        let status = page.status;
        format!("<!doctype html><title>{status}</title><h1>{status}</h1>")
    })
}

/// An [`AppError`] has no app state to hand, so its page first links `static/` as the app
/// serves it; the edge (see `super::edge`) renders it again with the app's (collected, hashed)
/// links.
pub fn link_error_page_statics(
    statics: &std::sync::Arc<crate::statics::StaticSite>,
    mut response: Response,
) -> Response {
    let Some(page) = take_error_page(&mut response) else {
        return response;
    };
    let page = ErrorPage {
        nav: super::templates::Nav {
            statics: statics.clone(),
            ..page.nav
        },
        ..page
    };
    *response.body_mut() = axum::body::Body::from(render_error_page(&page));
    response
}

/// Takes the page out of a response an [`AppError`] made, which no layer has given its final
/// body yet, so that the caller may give it one; `None` for any other response.
fn take_error_page(response: &mut Response) -> Option<ErrorPage> {
    let rendered = response.extensions_mut().get_mut::<Rendered>()?;
    // Still marked as an AppError's answer, for `replace_bare_server_errors`.
    let page = rendered.0.take()?;
    response
        .headers_mut()
        .remove(axum::http::header::CONTENT_LENGTH);
    Some(page)
}

/// For the routes a script calls: any [`AppError`] (from the handler, an extractor or the
/// members-only check) is answered as `{"error": "…"}` with its status and headers, never as
/// an HTML page.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let Some(page) = take_error_page(&mut response) else {
        return response;
    };
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::json!({ "error": page.message }).to_string();
    *response.body_mut() = axum::body::Body::from(body);
    response
}

/// "14 minutes", "1 minute", "30 seconds".
fn in_words(duration: std::time::Duration) -> String {
    let secs = duration.as_secs().max(1);
    let (n, unit) = if secs >= 90 {
        (secs.div_ceil(60), "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Layers outside the handlers (the session store inside axum-login and tower-sessions)
/// answer a failure of their store with a bare 500. That store is the database, so answer
/// as for any database failure: a 503 page.
pub fn replace_bare_server_errors(response: Response) -> Response {
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR
        && response.extensions().get::<Rendered>().is_none()
    {
        return AppError::Unavailable {
            what: "database",
            source: anyhow::anyhow!("the session store failed (see the log line before this one)"),
        }
        .into_response();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(err: DbError) -> StatusCode {
        AppError::from(err).into_response().status()
    }

    #[test]
    fn database_errors_answer_by_kind() {
        assert_eq!(
            status_of(DbError::from(sqlx::Error::PoolTimedOut)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(DbError::from(sqlx::Error::Io(std::io::Error::other(
                "reset"
            )))),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(DbError::from(sqlx::Error::RowNotFound)),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(DbError::Conflict("username")),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(DbError::from(sqlx::Error::ColumnNotFound("x".into()))),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[tokio::test]
    async fn a_taken_name_says_what_is_taken_and_a_bug_says_nothing_of_it() {
        let page = |err: AppError| async {
            let body = err.into_response().into_body();
            String::from_utf8(axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec()).unwrap()
        };
        assert!(
            page(DbError::Conflict("username").into())
                .await
                .contains("That username is already taken")
        );
        let bug =
            page(DbError::from(sqlx::Error::ColumnNotFound("secret_column".into())).into()).await;
        assert!(bug.contains("Something went wrong"));
        assert!(!bug.contains("secret_column"));
    }
}
