//! The directory and profile pages, and what happens when a dependency fails.

use reqwest::StatusCode;
use stowage::storage::SaveOptions;

use crate::helpers::{PASSWORD, STACKS, body, sample_pdf, spawn_app};

#[tokio::test]
async fn the_directory_lists_members_and_profiles_show_their_avatar() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        let (_, ada) = app.create_member("ada").await;
        let (_, bob) = app.create_member("bob").await;
        let png = b"\x89PNG\r\n\x1a\nnot really".to_vec();
        let key = format!("avatars/{ada}/{}.png", stowage::storage::random_name());
        app.storages()
            .public
            .save(
                &key,
                body(png.clone()),
                &SaveOptions {
                    content_type: Some("image/png".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        app.db()
            .set_avatar(
                ada,
                &key,
                None,
                "image/png",
                png.len() as i64,
                &stowage::storage::Sha256Digest::of(&png).to_hex(),
            )
            .await
            .unwrap();

        let home = app.get("/").await;
        assert_eq!(home.status(), StatusCode::OK);
        let html = home.text().await.unwrap();
        assert!(
            html.contains("ada display") && html.contains("bob display"),
            "{html}"
        );
        assert!(html.contains(&format!("href=\"/profiles/{bob}\"")));

        let page = app.get(&format!("/profiles/{ada}")).await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains("<h1>ada display</h1>"), "{html}");
        // The avatar's public URL answers anonymously, with the media cache policy.
        let marker = "class=\"avatar\" src=\"";
        let start = html.find(marker).unwrap() + marker.len();
        let src = &html[start..start + html[start..].find('"').unwrap()];
        let src = if src.starts_with('/') {
            app.url(src)
        } else {
            src.to_owned()
        };
        let avatar = app.anonymous_client().get(&src).send().await.unwrap();
        assert_eq!(avatar.status(), StatusCode::OK, "{stack:?} {src}");
        assert_eq!(avatar.headers()["cache-control"], "max-age=86400");
        assert_eq!(avatar.bytes().await.unwrap().to_vec(), png);
    }
}

#[tokio::test]
async fn only_signed_in_members_see_the_resume_link_and_only_when_there_is_one() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        let (_, with) = app.create_member("with").await;
        let (_, without) = app.create_member("without").await;
        app.give_resume(with, "cv.pdf", sample_pdf("x")).await;

        let visitor = app.get_html(&format!("/profiles/{with}")).await;
        assert!(!visitor.contains("Grab my resume"), "{stack:?}");
        assert!(!visitor.contains("/resume/"), "{stack:?}");

        app.login("without", PASSWORD, "/").await;
        let member = app.get_html(&format!("/profiles/{with}")).await;
        assert!(
            member.contains(&format!("href=\"/resume/{with}\">Grab my resume")),
            "{member}"
        );
        let no_resume = app.get_html(&format!("/profiles/{without}")).await;
        assert!(!no_resume.contains("Grab my resume"));
    }
}

#[tokio::test]
async fn unknown_profiles_and_pages_are_not_found() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        for path in ["/profiles/42", "/profiles/x", "/nope"] {
            let response = app.get(path).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(response.text().await.unwrap().contains("Not found"));
        }
    }
}

#[tokio::test]
async fn a_database_failure_is_a_503_page_not_a_crash() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        app.create_member("ada").await;
        // A visitor's sign-in form needs no database; signing in does.
        let token = app.csrf_token_from("/login").await;
        app.db().close().await;
        let sign_in = app
            .post_form(
                "/login",
                &[
                    ("username", "ada"),
                    ("password", crate::helpers::PASSWORD),
                    ("csrf_token", &token),
                ],
            )
            .await;
        assert_eq!(
            sign_in.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{stack:?}"
        );
        for path in ["/", "/profiles/1"] {
            let response = app.get(path).await;
            assert_eq!(
                response.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{stack:?} {path}"
            );
            let html = response.text().await.unwrap();
            assert!(html.contains("Temporarily unavailable"), "{html}");
            assert!(
                !html.contains("PoolClosed") && !html.contains("sqlx"),
                "{html}"
            );
        }
    }
}

#[tokio::test]
async fn html_pages_carry_the_security_headers_and_a_policy_naming_the_storages() {
    for stack in crate::helpers::STACKS {
        let app = crate::helpers::spawn_app(stack).await;
        for path in ["/", "/login", "/no-such-page"] {
            let response = app.get(path).await;
            let headers = response.headers();
            assert_eq!(headers["x-frame-options"], "DENY", "{path}");
            assert_eq!(headers["referrer-policy"], "same-origin");
            assert_eq!(headers["x-content-type-options"], "nosniff");
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert!(csp.starts_with("default-src 'self'"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            if let Some(s3) = &app.s3 {
                // Avatars come from the public bucket's website; direct uploads post to
                // the private bucket.
                assert!(
                    csp.contains(&format!("img-src 'self' {}", s3.public_base)),
                    "{csp}"
                );
                assert!(
                    csp.contains(&format!("connect-src 'self' {}", s3.endpoint)),
                    "{csp}"
                );
            } else {
                assert!(csp.contains("img-src 'self' data:"), "{csp}");
            }
        }
        let health = app.get("/healthz").await;
        assert!(
            !health.headers().contains_key("content-security-policy"),
            "HTML only"
        );
    }
}

/// The profile ids a directory page lists, in order, and its links to the pages before and
/// after (with an escaped `&` read back).
fn directory_page(page: &str) -> (Vec<i64>, Option<String>, Option<String>) {
    let ids = page
        .split("href=\"/profiles/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect();
    let link = |rel: &str| {
        let start = page.find(&format!("rel=\"{rel}\" href=\""))? + rel.len() + 13;
        let href = page[start..].split('"').next()?;
        Some(href.replace("&#38;", "&").replace("&amp;", "&"))
    };
    (ids, link("prev"), link("next"))
}

/// 100 members whose display names come in fives that lowercase alike (so one straddles a
/// page's edge): the directory lists them 48 a page in name order, then id; its links lead
/// through every member once, forward and back; a page's link that is not one is a 400.
#[tokio::test]
async fn the_directory_is_paged_in_name_order_forward_and_back() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        let hash = stowage::auth::hash_password(PASSWORD.to_owned())
            .await
            .unwrap();
        let mut expected = Vec::new();
        for i in 0..100 {
            let case = if i % 2 == 0 { "Member" } else { "MEMBER" };
            let name = format!("{case} {:03}", i / 5);
            let (_, profile) = app.create_member_as(&format!("m{i}"), &name, &hash).await;
            expected.push(profile);
        }

        let mut pages = Vec::new();
        let mut next = Some("/".to_owned());
        while let Some(path) = next {
            let response = app.get(&path).await;
            assert_eq!(response.status(), StatusCode::OK, "{stack:?} {path}");
            let (ids, prev, later) = directory_page(&response.text().await.unwrap());
            assert_eq!(prev.is_some(), !pages.is_empty(), "{stack:?} {path}");
            pages.push((path, ids));
            next = later;
            assert!(pages.len() <= 3, "{stack:?}: more pages than members");
        }
        let sizes: Vec<usize> = pages.iter().map(|(_, ids)| ids.len()).collect();
        assert_eq!(sizes, [48, 48, 4], "{stack:?}");
        let listed: Vec<i64> = pages.iter().flat_map(|(_, ids)| ids.clone()).collect();
        assert_eq!(listed, expected, "{stack:?}");

        // Back from the last page, through the "Earlier" links: the same pages.
        let (_, last) = pages.last().unwrap();
        let mut back = vec![last.clone()];
        let (_, mut prev, _) = directory_page(&app.get_html(&pages[2].0).await);
        while let Some(path) = prev {
            let (ids, earlier, _) = directory_page(&app.get_html(&path).await);
            back.push(ids);
            prev = earlier;
            assert!(back.len() <= 3, "{stack:?}: more pages than members");
        }
        back.reverse();
        let forward: Vec<Vec<i64>> = pages.into_iter().map(|(_, ids)| ids).collect();
        assert_eq!(back, forward, "{stack:?}");

        for bad in [
            "/?after=member+009",
            "/?after=member+009&id=x",
            "/?after=member+009&before=member+010&id=1",
            "/?id=1",
        ] {
            let response = app.get(bad).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
            assert!(response.text().await.unwrap().contains("link is not valid"));
        }
    }
}
