//! `/resume/{id}`: the members-only presigned redirect, on both stacks.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{
    AppOptions, PASSWORD, STACKS, Stack, TestApp, sample_pdf, spawn_app, spawn_app_with,
};

/// The member's 302 target, resolved against the app for the filesystem backend.
async fn resume_location(app: &TestApp, profile_id: i64) -> (reqwest::Response, String) {
    let response = app.get(&format!("/resume/{profile_id}")).await;
    assert_eq!(response.status(), StatusCode::FOUND, "{:?}", app.stack);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let absolute = if location.starts_with('/') {
        app.url(&location)
    } else {
        location
    };
    (response, absolute)
}

async fn signed_in_app_with_resume(
    stack: Stack,
    options: AppOptions,
    filename: &str,
) -> (TestApp, i64, Vec<u8>) {
    let app = spawn_app_with(stack, options).await;
    let (_, owner_profile) = app.create_member("owner").await;
    app.create_member("reader").await;
    let pdf = sample_pdf(&format!("{stack:?}"));
    app.give_resume(owner_profile, filename, pdf.clone()).await;
    let login = app.login("reader", PASSWORD, "/").await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    (app, owner_profile, pdf)
}

#[tokio::test]
async fn member_is_redirected_to_a_signed_url_that_serves_the_exact_pdf() {
    for stack in STACKS {
        let (app, profile, pdf) =
            signed_in_app_with_resume(stack, AppOptions::default(), "Ada CV.pdf").await;
        let (response, url) = resume_location(&app, profile).await;
        assert_eq!(response.headers()["cache-control"], "no-store");
        match stack {
            Stack::SqliteFilesystem => {
                assert!(url.contains("/media/private/resumes/"), "{url}");
                assert!(
                    url.contains("expires=") && url.contains("signature="),
                    "{url}"
                );
            }
            Stack::PostgresS3 => {
                let s3 = app.s3.as_ref().unwrap();
                assert!(url.starts_with(&s3.endpoint), "{url}");
                assert!(url.contains("X-Amz-Expires=600"), "{url}");
                assert!(
                    url.contains("response-content-type=application%2Fpdf"),
                    "{url}"
                );
            }
        }
        // Fetched with no cookie at all, as the browser does after the redirect.
        let download = app.anonymous_client().get(&url).send().await.unwrap();
        assert_eq!(download.status(), StatusCode::OK, "{stack:?}");
        assert_eq!(
            download.headers()["content-disposition"],
            "attachment; filename=\"Ada CV.pdf\""
        );
        assert_eq!(download.headers()["content-type"], "application/pdf");
        assert_eq!(download.bytes().await.unwrap().to_vec(), pdf, "{stack:?}");
    }
}

#[tokio::test]
async fn non_ascii_filenames_download_under_their_rfc_6266_name() {
    for stack in STACKS {
        let (app, profile, _) =
            signed_in_app_with_resume(stack, AppOptions::default(), "Zoë Résumé.pdf").await;
        let (_, url) = resume_location(&app, profile).await;
        let download = app.anonymous_client().get(&url).send().await.unwrap();
        assert_eq!(download.status(), StatusCode::OK);
        assert_eq!(
            download.headers()["content-disposition"],
            "attachment; filename=\"Zo_ R_sum_.pdf\"; filename*=UTF-8''Zo%C3%AB%20R%C3%A9sum%C3%A9.pdf"
        );
    }
}

#[tokio::test]
async fn a_signed_url_is_refused_once_its_ttl_has_passed() {
    for stack in STACKS {
        let options = AppOptions {
            vars: vec![("AWS_QUERYSTRING_EXPIRE", "1".into())],
        };
        let (app, profile, _) = signed_in_app_with_resume(stack, options, "cv.pdf").await;
        let (_, url) = resume_location(&app, profile).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        // On the S3 stack this refusal comes from the S3 server itself (AWS answers 403,
        // Garage 400).
        let late = app.anonymous_client().get(&url).send().await.unwrap();
        let status = late.status();
        assert!(status.is_client_error(), "{stack:?}: {status}");
        let text = late.text().await.unwrap();
        assert!(
            !text.contains("%PDF"),
            "{stack:?}: the resume was served late"
        );
    }
}

#[tokio::test]
async fn a_tampered_signed_url_is_refused() {
    for stack in STACKS {
        let (app, profile, _) =
            signed_in_app_with_resume(stack, AppOptions::default(), "cv.pdf").await;
        let (_, url) = resume_location(&app, profile).await;
        let client = app.anonymous_client();

        // Flip the last hex digit of the signature.
        let mut flipped = url.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        let response = client.get(&flipped).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{stack:?} signature"
        );

        // Ask for another download name or type than was signed.
        let edited = url.replace("cv.pdf", "evil.html");
        assert_ne!(edited, url);
        let response = client.get(&edited).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{stack:?} disposition"
        );

        // Push the expiry out.
        let edited = match stack {
            Stack::SqliteFilesystem => {
                let start = url.find("expires=").unwrap() + "expires=".len();
                let end = start + url[start..].find('&').unwrap();
                let later: u64 = url[start..end].parse::<u64>().unwrap() + 3600;
                format!("{}{later}{}", &url[..start], &url[end..])
            }
            Stack::PostgresS3 => url.replace("X-Amz-Expires=600", "X-Amz-Expires=604800"),
        };
        assert_ne!(edited, url);
        let response = client.get(&edited).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{stack:?} expiry");
    }
}

#[tokio::test]
async fn the_private_object_cannot_be_fetched_unsigned() {
    for stack in STACKS {
        let (app, profile, _) =
            signed_in_app_with_resume(stack, AppOptions::default(), "cv.pdf").await;
        let (_, url) = resume_location(&app, profile).await;
        let unsigned = url.split('?').next().unwrap().to_owned();
        let response = app.anonymous_client().get(&unsigned).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{stack:?}: {unsigned}"
        );
        let body = response.text().await.unwrap();
        assert!(!body.contains("%PDF"), "{stack:?}");
    }
}

#[tokio::test]
async fn anonymous_resume_request_is_forbidden_with_a_login_link_and_no_key() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        let (_, profile) = app.create_member("owner").await;
        let key = app.give_resume(profile, "cv.pdf", sample_pdf("x")).await;
        let response = app.get(&format!("/resume/{profile}")).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.headers().get("location").is_none());
        let body = response.text().await.unwrap();
        assert!(
            body.contains(&format!("/login?next=%2Fresume%2F{profile}")),
            "{body}"
        );
        assert!(!body.contains(&key), "{stack:?}: the key leaked");
        assert!(!body.contains("resumes/"), "{stack:?}");
        assert!(!body.contains("X-Amz") && !body.contains("signature="));
        if let Some(s3) = &app.s3 {
            assert!(!body.contains(&s3.endpoint));
        }
    }
}

#[tokio::test]
async fn missing_profiles_resumes_and_malformed_ids_are_not_found() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        let (_, without_resume) = app.create_member("owner").await;
        app.create_member("reader").await;
        app.login("reader", PASSWORD, "/").await;
        for path in [
            "/resume/999999".to_owned(),
            format!("/resume/{without_resume}"),
            "/resume/abc".to_owned(),
            "/resume/-1".to_owned(),
            "/resume/0".to_owned(),
            "/resume/1e3".to_owned(),
            "/resume/9223372036854775808".to_owned(),
        ] {
            let response = app.get(&path).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{stack:?} {path}");
        }
    }
}

#[tokio::test]
async fn a_signed_in_member_after_the_visitor_flow_lands_on_the_resume() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        let (_, profile) = app.create_member("owner").await;
        app.give_resume(profile, "cv.pdf", sample_pdf("x")).await;
        app.create_member("reader").await;
        let next = format!("/resume/{profile}");
        let login = app.login("reader", PASSWORD, &next).await;
        assert_eq!(login.status(), StatusCode::SEE_OTHER);
        assert_eq!(login.headers()["location"], next.as_str());
        let (_, _) = resume_location(&app, profile).await;
    }
}

#[tokio::test]
async fn a_replaced_resume_is_served_at_once() {
    for stack in STACKS {
        let (app, profile, _) =
            signed_in_app_with_resume(stack, AppOptions::default(), "old.pdf").await;
        let (_, first) = resume_location(&app, profile).await;
        assert!(first.contains("old.pdf"));
        let new_pdf = sample_pdf("new");
        let key = app.give_resume(profile, "new.pdf", new_pdf.clone()).await;
        let (_, second) = resume_location(&app, profile).await;
        assert!(
            second.contains(&key) && second.contains("new.pdf"),
            "{stack:?}: {second}"
        );
        let download = app.anonymous_client().get(&second).send().await.unwrap();
        assert_eq!(download.bytes().await.unwrap().to_vec(), new_pdf);
    }
}

/// Session look-ups sent at the same time share statements (see `db::session_loads`); each
/// still gets its own session, member and wanted resume, and an unknown or expired id nothing.
#[tokio::test]
async fn concurrent_session_look_ups_each_get_their_own_answer() {
    use std::collections::HashMap;
    use stowage::db::{SqlSessionStore, prefetch};
    use tower_sessions::SessionStore;
    use tower_sessions::session::{Id, Record};

    for stack in STACKS {
        let options = AppOptions {
            vars: vec![("CACHE_TTL_SECS", "0".into())],
        };
        let app = spawn_app_with(stack, options).await;
        let (owner, owner_profile) = app.create_member("owner").await;
        let (reader, reader_profile) = app.create_member("reader").await;
        app.give_resume(owner_profile, "Ada CV.pdf", sample_pdf("ada"))
            .await;
        let store = SqlSessionStore::new(app.db().clone());
        let record = |user: Option<i64>, expiry: time::OffsetDateTime| {
            let mut data = HashMap::new();
            if let Some(user) = user {
                data.insert(
                    "axum-login.data".to_owned(),
                    serde_json::json!({ "user_id": user, "auth_hash": [1, 2, 3] }),
                );
            }
            Record {
                id: Id::default(),
                data,
                expiry_date: expiry,
            }
        };
        let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let earlier = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        let mut sessions = Vec::new();
        for (user, expiry) in [
            (Some(owner), later),
            (Some(reader), later),
            (None, later),
            (Some(owner), earlier),
        ] {
            let mut made = record(user, expiry);
            store.create(&mut made).await.unwrap();
            sessions.push(made);
        }
        let unknown = record(Some(owner), later);

        let mut asked = Vec::new();
        for n in 0..300usize {
            let (session, live) = match n % 5 {
                4 => (&unknown, false),
                3 => (&sessions[3], false),
                i => (&sessions[i], true),
            };
            let wanted = [Some(owner_profile), Some(reader_profile), None][n % 3];
            let (store, id) = (store.clone(), session.id);
            let user = session
                .data
                .get("axum-login.data")
                .map(|d| d["user_id"].as_i64().unwrap());
            asked.push((
                tokio::spawn(prefetch::scope(wanted, async move {
                    let found = store.load(&id).await.unwrap();
                    let member = user.and_then(prefetch::take_user).map(|u| u.username);
                    let resume = wanted.and_then(prefetch::take_resume);
                    (found, member, resume)
                })),
                session.clone(),
                live,
                wanted,
            ));
        }
        for (task, session, live, wanted) in asked {
            let (found, member, resume) = task.await.unwrap();
            if !live {
                assert!(found.is_none(), "{stack:?}: {:?}", session.id);
                continue;
            }
            let found = found.expect("a live session");
            assert_eq!(found.id, session.id, "{stack:?}");
            assert_eq!(found.data, session.data, "{stack:?}");
            let expected_member = match session.data.get("axum-login.data") {
                Some(data) if data["user_id"] == owner => Some("owner"),
                Some(_) => Some("reader"),
                None => None,
            };
            assert_eq!(member.as_deref(), expected_member, "{stack:?}");
            match wanted {
                Some(p) if p == owner_profile => {
                    let resume = resume.expect("read with the session").expect("a resume");
                    assert_eq!(resume.resume_filename, "Ada CV.pdf", "{stack:?}");
                }
                Some(_) => assert!(matches!(resume, Some(None)), "{stack:?}: {resume:?}"),
                None => assert!(resume.is_none(), "{stack:?}"),
            }
        }
    }
}

/// Without caches, a signed-in `/resume/{id}` costs one round trip: the session store reads
/// the member and the resume with the session, and the look-ups after it in the same request
/// take those rather than asking again.
#[tokio::test]
async fn the_session_look_up_reads_the_member_and_the_resume_in_one_statement() {
    use stowage::db::{SqlSessionStore, prefetch};
    use tower_sessions::SessionStore;

    for stack in STACKS {
        let options = AppOptions {
            vars: vec![("CACHE_TTL_SECS", "0".into())],
        };
        let (app, profile, _) = signed_in_app_with_resume(stack, options, "Ada CV.pdf").await;
        let db = app.db();
        let (session, reader): (String, i64) = sqlx::query_as("SELECT id, user_id FROM sessions")
            .fetch_one(db.pool())
            .await
            .unwrap();
        let session = session.parse().unwrap();
        let store = SqlSessionStore::new(db.clone());
        let change = |statement: &'static str, id: i64| async move {
            sqlx::query(statement)
                .bind(id)
                .execute(db.pool())
                .await
                .unwrap();
        };
        prefetch::scope(Some(profile), async {
            assert!(store.load(&session).await.unwrap().is_some(), "{stack:?}");
            // Changed after the statement: this request goes on with what it read.
            change(
                "UPDATE users SET username = 'renamed' WHERE id = $1",
                reader,
            )
            .await;
            change(
                "UPDATE profiles SET resume_filename = 'new.pdf' WHERE id = $1",
                profile,
            )
            .await;
            let user = db.find_user(reader).await.unwrap().unwrap();
            assert_eq!(user.username, "reader", "{stack:?}");
            let resume = db.find_resume(profile).await.unwrap().unwrap();
            assert_eq!(resume.resume_filename, "Ada CV.pdf", "{stack:?}");
            // Taken once: the next look-up asks the database.
            let user = db.find_user(reader).await.unwrap().unwrap();
            assert_eq!(user.username, "renamed", "{stack:?}");
            let resume = db.find_resume(profile).await.unwrap().unwrap();
            assert_eq!(resume.resume_filename, "new.pdf", "{stack:?}");
        })
        .await;
        // And the page itself still answers with the current name.
        let (response, _) = resume_location(&app, profile).await;
        assert_eq!(response.headers()["cache-control"], "no-store", "{stack:?}");
    }
}
