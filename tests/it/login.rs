//! Signing in and out: CSRF, session renewal, `next`.

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, STACKS, spawn_app};

#[tokio::test]
async fn login_form_has_a_csrf_token_and_sign_in_renews_the_session_cookie() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        app.create_member("ada").await;
        let token = app.csrf_token_from("/login").await;
        assert_eq!(token.len(), 64);
        assert!(
            app.session_cookie().is_none(),
            "{stack:?}: a visitor's form starts no session"
        );
        assert!(app.cookie_header().contains("stowage_csrf="));
        let response = app.login("ada", PASSWORD, "/").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{stack:?}");
        assert_eq!(response.headers()["location"], "/");
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        assert!(
            !cookie.contains("Secure"),
            "plain-http development cookie: {cookie}"
        );
        assert!(
            app.session_cookie().is_some(),
            "signing in starts the session"
        );
        let home = app.get_html("/").await;
        assert!(home.contains("Signed in as <strong>ada</strong>"));
    }
}

#[tokio::test]
async fn login_without_a_valid_csrf_token_is_refused() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        app.create_member("ada").await;
        app.csrf_token_from("/login").await;
        for token in ["", "0000", &"a".repeat(64)] {
            let response = app
                .post_form(
                    "/login",
                    &[
                        ("username", "ada"),
                        ("password", PASSWORD),
                        ("csrf_token", token),
                    ],
                )
                .await;
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{stack:?} {token:?}"
            );
            assert!(response.text().await.unwrap().contains("Form expired"));
        }
        // No token field at all.
        let response = app
            .post_form("/login", &[("username", "ada"), ("password", PASSWORD)])
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        // A token from another session.
        let other = app.anonymous_client();
        let html = other
            .get(app.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let foreign = crate::helpers::extract_csrf(&html).unwrap();
        let response = app
            .post_form(
                "/login",
                &[
                    ("username", "ada"),
                    ("password", PASSWORD),
                    ("csrf_token", &foreign),
                ],
            )
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(app.get_html("/").await.contains("Sign in"));
    }
}

#[tokio::test]
async fn wrong_credentials_reshow_the_form_with_401() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        app.create_member("ada").await;
        for (user, password) in [
            ("ada", "wrong password"),
            ("nobody", PASSWORD),
            ("ada", &"x".repeat(1024 * 1024)),
        ] {
            let response = app.login(user, password, "/resume/1").await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{stack:?} {user}"
            );
            let html = response.text().await.unwrap();
            assert!(html.contains("do not match a member"), "{html}");
            assert!(html.contains("value=\"/resume/1\""), "next is kept");
            assert!(
                html.contains(&format!("value=\"{user}\"")),
                "username is kept"
            );
        }
    }
}

#[tokio::test]
async fn usernames_match_case_insensitively() {
    let app = spawn_app(STACKS[0]).await;
    app.create_member("Ada").await;
    let response = app.login("ada", PASSWORD, "/").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn next_is_followed_only_when_it_is_a_path_on_this_site() {
    let app = spawn_app(STACKS[0]).await;
    app.create_member("ada").await;
    for (next, expected) in [
        ("/profiles/1", "/profiles/1"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ] {
        let response = app.login("ada", PASSWORD, next).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], expected, "{next}");
    }
}

#[tokio::test]
async fn logout_needs_the_token_and_ends_the_session() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        app.create_member("ada").await;
        app.login("ada", PASSWORD, "/").await;
        let home = app.get_html("/").await;
        let token = crate::helpers::extract_csrf(&home).expect("the sign-out form has a token");

        let refused = app.post_form("/logout", &[("csrf_token", "")]).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);

        let response = app.post_form("/logout", &[("csrf_token", &token)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{stack:?}");
        let home = app.get_html("/").await;
        assert!(!home.contains("Signed in as"), "{stack:?}");
        // The old token died with the session.
        let replay = app.post_form("/logout", &[("csrf_token", &token)]).await;
        assert_eq!(replay.status(), StatusCode::FORBIDDEN);
    }
}
