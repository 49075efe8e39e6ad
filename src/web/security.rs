//! Security headers on every HTML page: `Referrer-Policy`, `X-Frame-Options` and a
//! Content-Security-Policy that admits only this origin plus, where they live elsewhere, the
//! static storage (stylesheet, script, favicon), the public media storage (avatars) and the
//! bucket that direct uploads post to.

use axum::http::{HeaderValue, header};
use axum::response::Response;

use crate::statics::StaticSite;
use crate::storage::Storages;

/// The headers added to HTML responses.
#[derive(Debug, Clone)]
pub struct HtmlHeaders {
    csp: HeaderValue,
}

impl HtmlHeaders {
    /// The policy for this app's storages; nothing is contacted.
    pub fn new(storages: &Storages, assets: &StaticSite) -> Self {
        let statics = origin(assets.base_url());
        let media = origin(&storages.public.base_url());
        let uploads = storages
            .private
            .direct_uploads()
            .and_then(|direct| origin(direct.upload_url()));
        // Where a signed-in resume link leads. A form's redirects are held to `form-action`
        // too: signing in from the members-only page redirects to /resume/{id} and on to the
        // private storage, which the browser would refuse were that origin not admitted.
        let downloads = origin(&storages.private.base_url());
        let sources = |extra: &[&Option<String>]| {
            let mut list = vec!["'self'".to_owned()];
            for source in extra.iter().copied().flatten() {
                if !list.contains(source) {
                    list.push(source.clone());
                }
            }
            list.join(" ")
        };
        let csp = format!(
            "default-src 'self'; img-src {} data:; style-src {}; script-src {}; font-src {}; \
             connect-src {}; form-action {}; frame-ancestors 'none'; base-uri 'none'; \
             object-src 'none'",
            sources(&[&media, &statics]),
            sources(&[&statics]),
            sources(&[&statics]),
            sources(&[&statics]),
            sources(&[&uploads]),
            sources(&[&downloads]),
        );
        Self {
            csp: HeaderValue::from_str(&csp).unwrap_or_else(|_| {
                HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'")
            }),
        }
    }

    /// Adds the headers to `response` when it is an HTML page.
    pub fn add_to(&self, response: &mut Response) {
        let is_html = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        if is_html {
            let h = response.headers_mut();
            h.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            );
        }
    }
}

/// `scheme://host[:port]` of an absolute URL; `None` for a path on this site.
fn origin(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    match url.origin() {
        origin @ url::Origin::Tuple(..) => Some(origin.ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn origins_of_absolute_urls_only() {
        assert_eq!(
            origin("http://127.0.0.1:9000/media/avatars/x.png").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            origin("https://cdn.example/assets/css/site.1.css").as_deref(),
            Some("https://cdn.example")
        );
        assert_eq!(origin("/static/css/site.css"), None);
    }
}
