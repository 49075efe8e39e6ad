//! Share links (`/s/{token}`): a member's current resume for people outside the site, on both
//! stacks, and what an attacker tries against them.

use reqwest::StatusCode;

use crate::helpers::{
    AppOptions, PASSWORD, STACKS, Stack, TestApp, extract_csrf, sample_pdf, spawn_app_with,
};
use crate::hostile::accounts::{browser, sign_in_at};

/// An app where "owner" has a resume and is signed in; returns the app, the profile and the PDF.
pub(crate) async fn owner_with_resume(stack: Stack) -> (TestApp, i64, Vec<u8>) {
    let app = spawn_app_with(stack, AppOptions::default()).await;
    let (_, profile) = app.create_member("owner").await;
    let pdf = sample_pdf(&format!("{stack:?} shared"));
    app.give_resume(profile, "Owner CV.pdf", pdf.clone()).await;
    let login = app.login("owner", PASSWORD, "/").await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    (app, profile, pdf)
}

/// Creates a link from the edit page's form; returns the status and the page.
async fn create(app: &TestApp, label: &str, days: &str, max: &str) -> (StatusCode, String) {
    let token = app.csrf_token_from("/profile/edit").await;
    let response = app
        .post_form(
            "/profile/share-links",
            &[
                ("csrf_token", &token),
                ("label", label),
                ("days", days),
                ("max_downloads", max),
            ],
        )
        .await;
    (response.status(), response.text().await.unwrap())
}

/// The link shown once on the page after creating it.
fn shown_link(page: &str) -> String {
    let start = page.find("/s/").expect("a share link on the page");
    let token: String = page[start + 3..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(token.len(), 64, "{page}");
    format!("/s/{token}")
}

pub(crate) async fn create_link(app: &TestApp, label: &str, max: &str) -> String {
    let (status, page) = create(app, label, "7", max).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("shown only this once"), "{page}");
    shown_link(&page)
}

/// Opens `link` as a stranger: the status, and the redirect's target when there is one.
async fn open(app: &TestApp, link: &str) -> (StatusCode, Option<String>, reqwest::Response) {
    let response = app
        .anonymous_client()
        .get(app.url(link))
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .map(|l| if l.starts_with('/') { app.url(&l) } else { l });
    (response.status(), location, response)
}

async fn download(app: &TestApp, url: &str) -> (String, Vec<u8>) {
    let got = app.anonymous_client().get(url).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK, "{url}");
    let disposition = got.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    (disposition, got.bytes().await.unwrap().to_vec())
}

async fn link_ids(app: &TestApp) -> Vec<i64> {
    sqlx::query_as::<_, (i64,)>("SELECT id FROM share_links ORDER BY id")
        .fetch_all(app.db().pool())
        .await
        .unwrap()
        .into_iter()
        .map(|(id,)| id)
        .collect()
}

#[tokio::test]
async fn a_share_link_serves_the_current_resume_to_anyone_until_revoked() {
    for stack in STACKS {
        let (app, profile, pdf) = owner_with_resume(stack).await;
        let link = create_link(&app, "Acme recruiting", "").await;
        let token = link.trim_start_matches("/s/");
        // Only the token's digest is stored.
        let stored: Vec<(String,)> = sqlx::query_as("SELECT token_sha256 FROM share_links")
            .fetch_all(app.db().pool())
            .await
            .unwrap();
        assert_eq!(stored.len(), 1, "{stack:?}");
        assert_ne!(stored[0].0, token, "{stack:?}");

        let (status, location, response) = open(&app, &link).await;
        assert_eq!(status, StatusCode::FOUND, "{stack:?}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
        let location = location.unwrap();
        match stack {
            Stack::PostgresS3 => assert!(location.contains("X-Amz-Expires=60&"), "{location}"),
            Stack::SqliteFilesystem => {
                let expires: i64 = location
                    .split("expires=")
                    .nth(1)
                    .and_then(|rest| rest.split('&').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap();
                assert!(expires - stowage::db::now() <= 60, "{location}");
            }
        }
        let (disposition, bytes) = download(&app, &location).await;
        assert_eq!(disposition, "attachment; filename=\"Owner CV.pdf\"");
        assert_eq!(bytes, pdf, "{stack:?}");

        // The member sees the link, its download and its last use.
        let page = app.get_html("/profile/edit").await;
        assert!(page.contains("Acme recruiting"), "{page}");
        assert!(
            !page.contains(token),
            "{stack:?}: the token is shown only once"
        );
        let row = &page[page.find("data-link-id").unwrap()..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(
            row.contains("<td>1</td>") && !row.contains("never"),
            "{row}"
        );

        // A replaced resume: the link serves the new one.
        let newer = sample_pdf(&format!("{stack:?} newer"));
        app.give_resume(profile, "Owner CV 2.pdf", newer.clone())
            .await;
        let (_, location, _) = open(&app, &link).await;
        assert_eq!(
            download(&app, &location.unwrap()).await.1,
            newer,
            "{stack:?}"
        );

        // Revoked: 410 with a page that says so, and no resume.
        let id = link_ids(&app).await[0];
        let token = app.csrf_token_from("/profile/edit").await;
        let revoked = app
            .post_form(
                &format!("/profile/share-links/{id}/revoke"),
                &[("csrf_token", &token)],
            )
            .await;
        assert_eq!(revoked.status(), StatusCode::SEE_OTHER, "{stack:?}");
        let (status, location, response) = open(&app, &link).await;
        assert_eq!(status, StatusCode::GONE, "{stack:?}");
        assert!(location.is_none());
        let text = response.text().await.unwrap();
        assert!(text.contains("no longer works"), "{text}");
        assert!(app.get_html("/profile/edit").await.contains("revoked"));
    }
}

#[tokio::test]
async fn links_end_when_used_up_expired_or_the_resume_is_deleted() {
    for stack in STACKS {
        let (app, profile, _) = owner_with_resume(stack).await;

        // At most 3 downloads, however many strangers open it at once.
        let limited = create_link(&app, "three times", "3").await;
        let openings = (0..8).map(|_| open(&app, &limited));
        let statuses: Vec<StatusCode> = futures_util::future::join_all(openings)
            .await
            .into_iter()
            .map(|(status, _, _)| status)
            .collect();
        let served = statuses.iter().filter(|s| **s == StatusCode::FOUND).count();
        let gone = statuses.iter().filter(|s| **s == StatusCode::GONE).count();
        assert_eq!((served, gone), (3, 5), "{stack:?}: {statuses:?}");
        assert!(app.get_html("/profile/edit").await.contains("3 of 3"));

        // Past its expiry.
        let expiring = create_link(&app, "expiring", "").await;
        assert_eq!(open(&app, &expiring).await.0, StatusCode::FOUND);
        let id = *link_ids(&app).await.last().unwrap();
        sqlx::query("UPDATE share_links SET expires_at = $1 WHERE id = $2")
            .bind(stowage::db::now() - 1)
            .bind(id)
            .execute(app.db().pool())
            .await
            .unwrap();
        assert_eq!(open(&app, &expiring).await.0, StatusCode::GONE, "{stack:?}");

        // The resume deleted: gone, and it stays gone after a new upload.
        let open_ended = create_link(&app, "open-ended", "").await;
        assert_eq!(open(&app, &open_ended).await.0, StatusCode::FOUND);
        let token = app.csrf_token_from("/profile/edit").await;
        let deleted = app
            .post_form("/profile/resume/delete", &[("csrf_token", &token)])
            .await;
        assert!(deleted.status().is_redirection(), "{stack:?}");
        assert_eq!(
            open(&app, &open_ended).await.0,
            StatusCode::GONE,
            "{stack:?}"
        );
        app.give_resume(profile, "Again.pdf", sample_pdf("again"))
            .await;
        assert_eq!(
            open(&app, &open_ended).await.0,
            StatusCode::GONE,
            "{stack:?}"
        );
    }
}

#[tokio::test]
async fn hostile_share_links_forged_forms_other_members_and_bad_values_change_nothing() {
    for stack in STACKS {
        let (app, _, _) = owner_with_resume(stack).await;
        let link = create_link(&app, "owner-only-link", "").await;
        let id = link_ids(&app).await[0];

        // Without the form token: refused, nothing made or revoked.
        let forged = app
            .post_form(
                "/profile/share-links",
                &[("label", "forged"), ("days", "7"), ("csrf_token", "x")],
            )
            .await;
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "{stack:?}");
        let forged = app
            .post_form(&format!("/profile/share-links/{id}/revoke"), &[])
            .await;
        assert!(forged.status().is_client_error(), "{stack:?}");
        assert_eq!(link_ids(&app).await, [id]);
        assert_eq!(open(&app, &link).await.0, StatusCode::FOUND);

        // Values out of range: 422 with the reason, no link.
        for (label, days, max, why) in [
            ("", "7", "", "label of 1 to 100"),
            (&"x".repeat(101) as &str, "7", "", "label of 1 to 100"),
            ("a", "31", "", "1 to 30 days"),
            ("a", "0", "", "1 to 30 days"),
            ("a", "7", "0", "1 to 1000"),
            ("a", "7", "many", "1 to 1000"),
        ] {
            let (status, page) = create(&app, label, days, max).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{stack:?} {days} {max}"
            );
            assert!(page.contains(why), "{page}");
        }
        assert_eq!(link_ids(&app).await, [id]);

        // Another member can neither revoke nor list the owner's link.
        app.create_member("other").await;
        let other = browser();
        sign_in_at(&other, &app.address, "other", PASSWORD).await;
        let page = other
            .get(app.url("/profile/edit"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!page.contains("owner-only-link"), "{stack:?}");
        let token = extract_csrf(&page).unwrap();
        let attempt = other
            .post(app.url(&format!("/profile/share-links/{id}/revoke")))
            .form(&[("csrf_token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(attempt.status(), StatusCode::NOT_FOUND, "{stack:?}");
        assert_eq!(open(&app, &link).await.0, StatusCode::FOUND, "{stack:?}");
        // Without a resume of their own, the other member gets no link.
        let made = other
            .post(app.url("/profile/share-links"))
            .form(&[
                ("csrf_token", token.as_str()),
                ("label", "x"),
                ("days", "7"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), StatusCode::CONFLICT, "{stack:?}");
        assert!(made.text().await.unwrap().contains("Upload a resume first"));

        // The owner revokes it: the token is dead for everyone, a near-miss is unknown.
        let token = app.csrf_token_from("/profile/edit").await;
        app.post_form(
            &format!("/profile/share-links/{id}/revoke"),
            &[("csrf_token", &token)],
        )
        .await;
        assert_eq!(open(&app, &link).await.0, StatusCode::GONE, "{stack:?}");
        let near_miss = format!("{}0", &link[..link.len() - 1]);
        let near_miss = if near_miss == link {
            format!("{}1", &link[..link.len() - 1])
        } else {
            near_miss
        };
        assert_eq!(open(&app, &near_miss).await.0, StatusCode::NOT_FOUND);
    }
}

/// Makes a link with the request's `Host` header set to `host`.
async fn create_with_host(app: &TestApp, host: &str) -> (StatusCode, String) {
    let token = app.csrf_token_from("/profile/edit").await;
    let response = app
        .client
        .post(app.url("/profile/share-links"))
        .header("host", host)
        .form(&[
            ("csrf_token", token.as_str()),
            ("label", "recruiter"),
            ("days", "7"),
            ("max_downloads", ""),
        ])
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// A share link is built on `SITE_URL`, whatever `Host` the request names; without it
/// (development), on the request's origin, and a `Host` that is no valid authority is refused
/// before any link is made.
#[tokio::test]
async fn a_share_link_is_built_on_site_url_never_on_the_host_header() {
    let options = AppOptions {
        vars: vec![("SITE_URL", "https://members.example.org/".into())],
    };
    let app = spawn_app_with(Stack::SqliteFilesystem, options).await;
    let (_, profile) = app.create_member("owner").await;
    app.give_resume(profile, "cv.pdf", sample_pdf("site url"))
        .await;
    assert_eq!(
        app.login("owner", PASSWORD, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    let (status, page) = create_with_host(&app, "evil.example").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let link = shown_link(&page);
    assert!(
        page.contains(&format!("https://members.example.org{link}")),
        "{page}"
    );
    assert!(!page.contains("evil.example"), "{page}");

    let (app, _, _) = owner_with_resume(Stack::SqliteFilesystem).await;
    let (status, page) = create_with_host(&app, "someone@evil.example").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("no valid host"), "{page}");
    assert_eq!(
        app.number("SELECT count(*) FROM share_links").await,
        0,
        "refused before any link was made"
    );
    let (status, page) = create_with_host(&app, &app.address.replace("http://", "")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let link = shown_link(&page);
    assert!(page.contains(&app.url(&link)), "{page}");
}
