//! The hostile corpus, part two: attacks on accounts and sessions, and the uploads that could
//! be swapped or left behind. Each case says what the attacker sees, and checks that the
//! database, the storages and the files hold only what they should afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::snapshot;
use crate::helpers::{
    AppOptions, PASSWORD, STACKS, Stack, TestApp, eventually, extract_csrf,
    fresh_postgres_database, multipart_resume, raw_request, sample_pdf, spawn_app, spawn_app_with,
    walk,
};
use crate::uploads::member_app;

/// A client that keeps its own cookies and follows no redirect: another browser.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Posts the sign-in form at `base` with `browser`, whose token it fetches first.
pub(crate) async fn sign_in_at(
    browser: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let page = browser.get(format!("{base}/login")).send().await.unwrap();
    let token = extract_csrf(&page.text().await.unwrap()).unwrap();
    browser
        .post(format!("{base}/login"))
        .form(&[
            ("username", username),
            ("password", password),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap()
}

/// Whether `browser` is signed in at `base`: its edit page answers, not a redirect to sign in.
async fn signed_in_at(browser: &reqwest::Client, base: &str) -> bool {
    let page = browser
        .get(format!("{base}/profile/edit"))
        .send()
        .await
        .unwrap();
    page.status() == StatusCode::OK
}

async fn session_rows(app: &TestApp) -> i64 {
    app.db().count_sessions().await.unwrap()
}

#[tokio::test]
async fn a_flood_of_wrong_passwords_hashes_five_and_locks_the_username() {
    for stack in STACKS {
        let options = AppOptions {
            vars: vec![
                ("PASSWORD_HASH_CONCURRENCY", "1".into()),
                ("LOGIN_FAILURE_WINDOW_SECS", "6".into()),
                // Only the username's count is under test: with the address's limit (50) in
                // play too, the Retry-After told is the address's window, and the username's
                // may start a second later when the flood's upserts interleave.
                ("LOGIN_ADDRESS_FAILURE_LIMIT", "1000".into()),
            ],
        };
        let app = member_app(stack, options).await;
        let before = snapshot(&app).await;
        let sessions = session_rows(&app).await;

        // One client, one cookie, one token, 60 wrong passwords at once.
        let visitor = browser();
        let page = visitor.get(app.url("/login")).send().await.unwrap();
        let token = extract_csrf(&page.text().await.unwrap()).unwrap();
        let flood = (0..60).map(|i| {
            let (visitor, token, url) = (visitor.clone(), token.clone(), app.url("/login"));
            tokio::spawn(async move {
                let password = format!("guess number {i}");
                let response = visitor
                    .post(url)
                    .form(&[
                        ("username", "ada"),
                        ("password", password.as_str()),
                        ("csrf_token", &token),
                    ])
                    .send()
                    .await
                    .unwrap();
                let retry = response.headers().get("retry-after").is_some();
                (response.status(), retry, response.text().await.unwrap())
            })
        });
        let answers = futures_util::future::join_all(flood).await;
        let count = |status: StatusCode| {
            answers
                .iter()
                .filter(|a| a.as_ref().unwrap().0 == status)
                .count()
        };
        let (wrong, locked, busy) = (
            count(StatusCode::UNAUTHORIZED),
            count(StatusCode::TOO_MANY_REQUESTS),
            count(StatusCode::SERVICE_UNAVAILABLE),
        );
        assert_eq!(wrong + locked + busy, 60, "{stack:?}: only 401, 429, 503");
        assert_eq!(locked, 55, "{stack:?}: five attempts, then locked");
        for (status, retry, text) in answers.iter().map(|a| a.as_ref().unwrap()) {
            if *status == StatusCode::TOO_MANY_REQUESTS {
                assert!(*retry && text.contains("try again in"), "{stack:?}: {text}");
            }
            if *status == StatusCode::SERVICE_UNAVAILABLE {
                assert!(*retry && text.contains("busy"), "{stack:?}: {text}");
            }
        }

        // Locked: even the right password is refused, without a hash.
        let right = sign_in_at(&browser(), &app.address, "ada", PASSWORD).await;
        assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS, "{stack:?}");
        let seconds: u64 = right.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=6).contains(&seconds), "{stack:?}: {seconds}");
        assert_eq!(snapshot(&app).await, before, "{stack:?}: nothing changed");
        assert_eq!(session_rows(&app).await, sessions, "{stack:?}: no session");

        // Once the window has passed, the right password signs in.
        tokio::time::sleep(Duration::from_secs(seconds + 1)).await;
        let right = sign_in_at(&browser(), &app.address, "ada", PASSWORD).await;
        assert_eq!(right.status(), StatusCode::SEE_OTHER, "{stack:?}");
    }
}

#[tokio::test]
async fn spraying_one_password_over_many_usernames_is_stopped_per_address() {
    let options = AppOptions {
        vars: vec![("LOGIN_ADDRESS_FAILURE_LIMIT", "3".into())],
    };
    let app = spawn_app_with(Stack::SqliteFilesystem, options).await;
    for name in ["ann", "bea", "cid", "dot"] {
        app.create_member(name).await;
    }
    let before = snapshot(&app).await;
    let mut statuses = Vec::new();
    for name in ["ann", "bea", "cid", "dot"] {
        let response = sign_in_at(&browser(), &app.address, name, "Summer2026!").await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    // The address is locked for every username, even with the right password.
    let right = sign_in_at(&browser(), &app.address, "dot", PASSWORD).await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    // A locked address writes no counter for each new name it tries, nor for a name no member
    // could have.
    let counters = || app.number("SELECT count(*) FROM login_failures");
    let rows = counters().await;
    for name in ["eve1", "eve2", &"x".repeat(100_000)] {
        let response = sign_in_at(&browser(), &app.address, name, "Summer2026!").await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(counters().await, rows);
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn sign_up_is_limited_per_address() {
    let options = AppOptions {
        vars: vec![("SIGNUP_ADDRESS_LIMIT", "2".into())],
    };
    let app = spawn_app_with(Stack::SqliteFilesystem, options).await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let visitor = browser();
        let page = visitor.get(app.url("/signup")).send().await.unwrap();
        let token = extract_csrf(&page.text().await.unwrap()).unwrap();
        let name = format!("bot{i}");
        let response = visitor
            .post(app.url("/signup"))
            .form(&[
                ("username", name.as_str()),
                ("password", PASSWORD),
                ("password2", PASSWORD),
                ("csrf_token", &token),
            ])
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [303, 303, 429]);
    let (users,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
        .fetch_one(app.db().pool())
        .await
        .unwrap();
    assert_eq!(users, 2, "the refused sign-up made no account");
}

#[tokio::test]
async fn the_lock_out_is_shared_by_two_processes_on_one_postgres() {
    use crate::process::{base_vars, free_port, serve};
    let url = fresh_postgres_database().await;
    let db = stowage::db::Database::connect(&url, 1).await.unwrap();
    db.migrate().await.unwrap();
    let hash = stowage::auth::hash_password(PASSWORD.into()).await.unwrap();
    db.create_user("ada", &hash, false, "Ada").await.unwrap();
    let mut sites = Vec::new();
    for _ in 0..2 {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut vars = base_vars(&dir, free_port());
        vars.retain(|(k, _)| k != "DATABASE_URL");
        vars.push(("DATABASE_URL".into(), url.clone()));
        sites.push(serve(vars, dir).await);
    }
    let base = |i: usize| sites[i].url("").trim_end_matches('/').to_owned();
    // Five wrong passwords, spread over the two instances.
    for i in 0..5 {
        let response = sign_in_at(&browser(), &base(i % 2), "ada", "not the password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    for i in 0..2 {
        let right = sign_in_at(&browser(), &base(i), "ada", PASSWORD).await;
        assert_eq!(
            right.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "instance {i} knows of the other's failures"
        );
    }
    let (sessions,): (i64,) = sqlx::query_as("SELECT count(*) FROM sessions")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

#[tokio::test]
async fn a_thousand_anonymous_form_views_write_no_session() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        let visitor = app.anonymous_client();
        for i in 0..1000 {
            let path = if i % 2 == 0 { "/login" } else { "/signup" };
            let response = visitor.get(app.url(path)).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{stack:?} {path}");
            let cookies: Vec<&str> = response
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|c| c.to_str().unwrap())
                .collect();
            assert!(
                cookies.iter().all(|c| c.starts_with("stowage_csrf=")),
                "{stack:?}: {cookies:?}"
            );
        }
        assert_eq!(session_rows(&app).await, 0, "{stack:?}");
    }
}

#[tokio::test]
async fn signing_in_over_a_live_session_gets_a_fresh_id_and_the_old_one_is_dead() {
    for stack in STACKS {
        let app = member_app(stack, AppOptions::default()).await;
        let first = app.session_cookie().unwrap();
        let again = app.login("ada", PASSWORD, "/").await;
        assert_eq!(again.status(), StatusCode::SEE_OTHER, "{stack:?}");
        let second = app.session_cookie().unwrap();
        assert_ne!(first, second, "{stack:?}: the session id must change");
        let stale = app
            .anonymous_client()
            .get(app.url("/profile/edit"))
            .header("cookie", format!("stowage_session={first}"))
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), StatusCode::SEE_OTHER, "{stack:?}");
        assert_eq!(
            session_rows(&app).await,
            1,
            "{stack:?}: the old row is gone"
        );
        assert_eq!(app.get("/profile/edit").await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_session_past_its_idle_or_absolute_lifetime_is_refused() {
    for (var, value) in [("SESSION_IDLE_SECS", "2"), ("SESSION_MAX_AGE_SECS", "2")] {
        let options = AppOptions {
            vars: vec![(var, value.into()), ("CACHE_TTL_SECS", "0".into())],
        };
        let app = member_app(Stack::SqliteFilesystem, options).await;
        assert_eq!(app.get("/profile/edit").await.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let page = app.get("/profile/edit").await;
        assert_eq!(page.status(), StatusCode::SEE_OTHER, "{var}");
        app.db().delete_expired_sessions().await.unwrap();
        assert_eq!(session_rows(&app).await, 0, "{var}: swept");
    }
}

#[tokio::test]
async fn a_password_change_ends_every_other_session_at_once_on_every_instance() {
    // Caches a minute long: only the invalidation can end the other instance's session.
    let vars = vec![("CACHE_TTL_SECS", "60".to_owned())];
    let app = member_app(Stack::PostgresS3, AppOptions { vars: vars.clone() }).await;
    let mut other_vars = vars.clone();
    other_vars.push(("DATABASE_URL", app.config.database.url.clone()));
    let other = spawn_app_with(Stack::SqliteFilesystem, AppOptions { vars: other_vars }).await;
    // The member signed in on the other instance too, its session and user now cached there.
    let elsewhere = browser();
    let signed = sign_in_at(&elsewhere, &other.address, "ada", PASSWORD).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert!(signed_in_at(&elsewhere, &other.address).await);

    let change = |current: &'static str, new: &'static str, again: &'static str| {
        let app = &app;
        async move {
            let token = app.csrf_token_from("/profile/password").await;
            app.post_form(
                "/profile/password",
                &[
                    ("csrf_token", token.as_str()),
                    ("current_password", current),
                    ("new_password", new),
                    ("new_password2", again),
                ],
            )
            .await
        }
    };
    // Refusals first: a wrong current password, a weak or mismatched new one.
    for (current, new, again, message) in [
        (
            "not it at all",
            "quartz ferret lantern",
            "quartz ferret lantern",
            "current password is not right",
        ),
        (PASSWORD, "password1", "password1", "too easy to guess"),
        (PASSWORD, "adaada123", "adaada123", "too easy to guess"),
        (
            PASSWORD,
            "quartz ferret lantern",
            "quartz ferret lanterns",
            "differ",
        ),
    ] {
        let response = change(current, new, again).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{new}");
        assert!(response.text().await.unwrap().contains(message), "{new}");
    }
    assert!(
        signed_in_at(&elsewhere, &other.address).await,
        "nothing changed yet"
    );

    let done = change(PASSWORD, "quartz ferret lantern", "quartz ferret lantern").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(done.headers()["location"], "/profile/edit?saved=password");
    let changed = Instant::now();
    while signed_in_at(&elsewhere, &other.address).await {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the other instance still honours the old session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.get("/profile/edit").await.status(),
        StatusCode::OK,
        "this one continues"
    );
    let old = sign_in_at(&browser(), &other.address, "ada", PASSWORD).await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let new = sign_in_at(&elsewhere, &other.address, "ada", "quartz ferret lantern").await;
    assert_eq!(new.status(), StatusCode::SEE_OTHER);

    // "Sign out everywhere" does the second part alone.
    assert!(signed_in_at(&elsewhere, &other.address).await);
    let token = app.csrf_token_from("/profile/edit").await;
    let out = app
        .post_form("/profile/sessions/end", &[("csrf_token", &token)])
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let ended = Instant::now();
    while signed_in_at(&elsewhere, &other.address).await {
        assert!(
            ended.elapsed() < Duration::from_secs(1),
            "sign-out everywhere"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.get("/profile/edit").await.status(), StatusCode::OK);
    // Without the form token, neither does anything.
    let forged = app.post_form("/profile/sessions/end", &[]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_session_signed_out_elsewhere_is_never_written_back() {
    use tower_sessions::session::Id;
    use tower_sessions::session_store::SessionStore;
    for stack in STACKS {
        let app = member_app(stack, AppOptions::default()).await;
        // Another instance's store, in the middle of a request: the session is loaded.
        let (id,): (String,) = sqlx::query_as("SELECT id FROM sessions")
            .fetch_one(app.db().pool())
            .await
            .unwrap();
        let id: Id = id.parse().unwrap();
        let elsewhere = stowage::db::SqlSessionStore::new(app.db().clone());
        let record = elsewhere.load(&id).await.unwrap().expect("the session");
        // The member signs out on this instance...
        let token = app.csrf_token_from("/profile/edit").await;
        let out = app.post_form("/logout", &[("csrf_token", &token)]).await;
        assert_eq!(out.status(), StatusCode::SEE_OTHER, "{stack:?}");
        assert_eq!(session_rows(&app).await, 0, "{stack:?}");
        // ... and the other instance's request ends by saving the session it loaded (it
        // stamps a session's use once a minute): the row does not come back.
        elsewhere.save(&record).await.unwrap();
        assert_eq!(session_rows(&app).await, 0, "{stack:?}: written back");
        assert!(elsewhere.load(&id).await.unwrap().is_none(), "{stack:?}");
    }
}

#[tokio::test]
async fn a_replaced_or_deleted_resume_is_seen_at_once_on_every_instance() {
    // Caches a minute long: only the invalidation can tell the other instance.
    let vars = vec![("CACHE_TTL_SECS", "60".to_owned())];
    let app = member_app(Stack::PostgresS3, AppOptions { vars: vars.clone() }).await;
    let mut other_vars = vars.clone();
    other_vars.push(("DATABASE_URL", app.config.database.url.clone()));
    other_vars.extend(app.s3.as_ref().unwrap().vars());
    let other = spawn_app_with(Stack::SqliteFilesystem, AppOptions { vars: other_vars }).await;
    let elsewhere = browser();
    let signed = sign_in_at(&elsewhere, &other.address, "ada", PASSWORD).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let profile = app.ada_profile().await.id;
    // Where the other instance sends the member for the resume: the key in its Location.
    let served_elsewhere = || {
        let elsewhere = &elsewhere;
        let url = format!("{}/resume/{profile}", other.address);
        async move {
            let response = elsewhere.get(&url).send().await.unwrap();
            match response.status() {
                StatusCode::FOUND => Some(
                    response.headers()["location"]
                        .to_str()
                        .unwrap()
                        .split('?')
                        .next()
                        .unwrap()
                        .to_owned(),
                ),
                StatusCode::NOT_FOUND => None,
                status => panic!("/resume answered {status}"),
            }
        }
    };
    let upload = |name: &'static str| {
        let app = &app;
        async move {
            let pdf = sample_pdf(name);
            let issued = app.issue_upload(&pdf).await;
            app.send_to_s3(&issued, "application/pdf", pdf).await;
            let (status, body) = app.confirm_upload(&issued.key, "cv.pdf").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            app.ada_profile().await.resume_key.unwrap()
        }
    };
    // Within a second of the change on the first instance, the other serves what it says.
    let wait_for = |expected: Option<String>| {
        let served_elsewhere = &served_elsewhere;
        async move {
            let changed = Instant::now();
            loop {
                let served = served_elsewhere().await;
                let current = match (&served, &expected) {
                    (Some(url), Some(key)) => url.ends_with(key.as_str()),
                    (None, None) => true,
                    _ => false,
                };
                if current {
                    break;
                }
                assert!(
                    changed.elapsed() < Duration::from_secs(1),
                    "still {served:?}, not {expected:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let first = upload("first").await;
    wait_for(Some(first)).await; // now cached on the other instance
    let second = upload("second").await;
    wait_for(Some(second)).await;
    let token = app.csrf_token_from("/profile/edit").await;
    let deleted = app
        .post_form("/profile/resume/delete", &[("csrf_token", &token)])
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    wait_for(None).await;
}

#[tokio::test]
async fn posting_the_signed_form_again_after_confirm_changes_nothing_a_member_downloads() {
    let app = member_app(Stack::PostgresS3, AppOptions::default()).await;
    let pdf = sample_pdf("the real one");
    let issued = app.issue_upload(&pdf).await;
    let posted = app
        .send_to_s3(&issued, "application/pdf", pdf.clone())
        .await;
    assert!(posted.is_success());
    assert_eq!(
        app.confirm_upload(&issued.key, "cv.pdf").await.0,
        StatusCode::OK
    );
    let profile = app.ada_profile().await;
    let served_key = profile.resume_key.clone().unwrap();
    let before = snapshot(&app).await;

    // The form is still within its expiry, but it signs the file's length and SHA-256: S3
    // refuses an HTML page posted with it...
    let swap = b"<!doctype html><h1>not the resume</h1><script>alert(1)</script>".to_vec();
    let refused = app.send_to_s3(&issued, "application/pdf", swap).await;
    assert!(refused.is_client_error(), "S3 answered {refused}");
    // ... and takes the same file again, under the issued key...
    let again = app
        .send_to_s3(&issued, "application/pdf", pdf.clone())
        .await;
    assert!(again.is_success(), "S3 answered {again}");

    // ... and nothing a member downloads changes.
    let redirect = app.get(&format!("/resume/{}", profile.id)).await;
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        app.fetch(&location).await.bytes().await.unwrap().to_vec(),
        pdf
    );
    // It cannot be confirmed either, and the sweep deletes it with the row.
    assert_eq!(
        app.confirm_upload(&issued.key, "x.pdf").await.0,
        StatusCode::FORBIDDEN
    );
    let later = stowage::db::now() + 1;
    stowage::media::sweep_abandoned_direct_uploads(app.db(), app.storages(), later).await;
    assert_eq!(app.all_objects().await, vec![served_key]);
    let after = snapshot(&app).await;
    assert_eq!(
        (after.users, after.profiles),
        (before.users, before.profiles)
    );
    assert_eq!(after.objects, before.objects);
}

#[tokio::test]
async fn a_file_substituted_under_an_issued_key_is_refused_at_confirm() {
    // A store that does not check the signed SHA-256 (or anyone else with write access to the
    // bucket) may hold another file under the key by the time the member confirms.
    let app = member_app(Stack::PostgresS3, AppOptions::default()).await;
    let pdf = sample_pdf("announced");
    let issued = app.issue_upload(&pdf).await;
    let mut other = pdf.clone();
    other[12] ^= 1; // the same length, still a PDF, another file
    let options = stowage::storage::SaveOptions {
        content_type: Some("application/pdf".into()),
        ..Default::default()
    };
    app.storages()
        .private
        .save(&issued.key, crate::helpers::body(other), &options)
        .await
        .unwrap();
    let (status, body) = app.confirm_upload(&issued.key, "cv.pdf").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not the one you chose"),
        "{body}"
    );
    assert!(app.ada_profile().await.resume_key.is_none());
    assert!(app.all_objects().await.is_empty(), "both copies deleted");
}

/// Opens a connection that sends a request's headers one byte a second, for `seconds`.
async fn slow_headers(port: u16, seconds: usize) -> tokio::task::JoinHandle<bool> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        let head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
        for byte in head.iter().cycle().take(seconds) {
            if stream.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Closed by the server means a read ends.
        let mut buffer = [0u8; 256];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await,
            Ok(Ok(_) | Err(_))
        )
    })
}

#[tokio::test]
async fn five_hundred_slow_header_connections_do_not_stop_a_member_s_download() {
    let app = member_app(Stack::SqliteFilesystem, AppOptions::default()).await;
    let profile = app.ada_profile().await;
    app.give_resume(profile.id, "cv.pdf", sample_pdf("served anyway"))
        .await;
    let mut slow = Vec::new();
    for _ in 0..500 {
        slow.push(slow_headers(app.port(), 14).await);
    }
    for _ in 0..5 {
        let started = Instant::now();
        let response = app.get(&format!("/resume/{}", profile.id)).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The header-read timeout (10 s) closed every one of them.
    for connection in slow {
        assert!(connection.await.unwrap(), "a slow connection was left open");
    }
}

/// Files that an interrupted upload must never leave: temporary `.part` files in the media
/// directory.
fn part_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    walk(app.dir.path())
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".part"))
        .collect()
}

#[tokio::test]
async fn uploads_cut_off_by_the_timeout_or_a_disconnect_leave_no_part_file() {
    let options = AppOptions {
        vars: vec![("UPLOAD_TIMEOUT_SECS", "1".into())],
    };
    let app = member_app(Stack::SqliteFilesystem, options).await;
    let before = snapshot(&app).await;
    let token = app.csrf_token_from("/profile/edit").await;
    let mut pdf = sample_pdf("cut off");
    pdf.splice(9..9, std::iter::repeat_n(b' ', 512 * 1024));
    let (content_type, body) = multipart_resume(&token, &pdf);
    let head = format!(
        "POST /profile/resume HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        app.cookie_header(),
        body.len()
    );
    // The timeout: the file trickles in for 3 s.
    let (status, _) = raw_request(app.port(), &head, &body, 30, Duration::from_millis(100)).await;
    assert_eq!(status, 408);
    let gone = || async { part_files(&app).is_empty() };
    assert!(
        eventually(Duration::from_secs(5), gone).await,
        "timeout: {:?}",
        part_files(&app)
    );

    // A disconnect: half the file, then the client is gone.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port()))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..body.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    assert!(
        eventually(Duration::from_secs(5), gone).await,
        "disconnect: {:?}",
        part_files(&app)
    );
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn an_s3_multipart_upload_cut_off_by_the_timeout_is_aborted() {
    let options = AppOptions {
        vars: vec![
            ("RESUME_MAX_BYTES", (80 * 1024 * 1024).to_string()),
            ("UPLOAD_TIMEOUT_SECS", "6".into()),
        ],
    };
    let app = member_app(Stack::PostgresS3, options).await;
    let before = snapshot(&app).await;
    let s3 = app.s3.as_ref().unwrap();
    // Each part takes 4 s: the upload is cut off while its parts are on their way.
    s3.delay_upload_parts(Duration::from_secs(4));
    let mut pdf = sample_pdf("too slow a store");
    pdf.splice(9..9, std::iter::repeat_n(b' ', 70 * 1024 * 1024));
    let token = app.csrf_token_from("/profile/edit").await;
    let (content_type, body) = multipart_resume(&token, &pdf);
    let upload = tokio::spawn(
        app.client
            .post(app.url("/profile/resume"))
            .header("content-type", content_type)
            .body(body)
            .send(),
    );
    let started = Instant::now();
    while s3.unfinished_uploads().await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "no multipart upload began"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = upload.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    let cut = Instant::now();
    while !s3.unfinished_uploads().await.is_empty() {
        assert!(
            cut.elapsed() < Duration::from_secs(10),
            "an incomplete multipart upload was left: {:?}",
            s3.unfinished_uploads().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s3.delay_upload_parts(Duration::ZERO);
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn sigterm_during_a_multipart_upload_aborts_it_before_exit() {
    use crate::process::{client, postgres_s3_vars, serve, sign_up_as};
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (s3, _, mut vars) = postgres_s3_vars(&dir, "sigterm").await;
    vars.push(("RESUME_MAX_BYTES".into(), (80 * 1024 * 1024).to_string()));
    vars.push(("SHUTDOWN_GRACE_SECS".into(), "1".into()));
    let mut served = serve(vars, dir).await;
    let (http, jar) = client();
    sign_up_as(&http, &jar, &served, "ada", PASSWORD).await;
    let edit = http.get(served.url("/profile/edit")).send().await.unwrap();
    let token = extract_csrf(&edit.text().await.unwrap()).unwrap();
    s3.delay_upload_parts(Duration::from_secs(30));
    let mut pdf = sample_pdf("cut by the shutdown");
    pdf.splice(9..9, std::iter::repeat_n(b' ', 70 * 1024 * 1024));
    let (content_type, body) = multipart_resume(&token, &pdf);
    let upload = tokio::spawn(
        http.post(served.url("/profile/resume"))
            .header("content-type", content_type)
            .body(body)
            .send(),
    );
    // Wait for the multipart upload to begin, then stop the server.
    let started = Instant::now();
    while s3.unfinished_uploads().await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no multipart upload began"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    served.signal("TERM");
    let status = served.exit_within(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}: {}", served.output());
    let _ = upload.await;
    assert_eq!(
        s3.unfinished_uploads().await,
        Vec::<String>::new(),
        "{}",
        served.output()
    );
}

#[tokio::test]
async fn make_staging_knows_live_postgres_under_another_spelling_of_its_url() {
    let url = fresh_postgres_database().await;
    let db = stowage::db::Database::connect(&url, 1).await.unwrap();
    db.migrate().await.unwrap();
    db.set_mark(stowage::cli::make_staging::STAGING_MARK)
        .await
        .unwrap();
    db.create_user("bob", "hash", false, "Bob").await.unwrap();
    db.close().await;
    // Another host name for the same server, another scheme, a query string.
    let parsed = url::Url::parse(&url).unwrap();
    let respelled = format!(
        "postgresql://postgres@localhost:{}{}?sslmode=disable&application_name=live",
        parsed.port().unwrap_or(5432),
        parsed.path()
    );
    let refused = crate::staging::run(
        &["make-staging", "--yes"],
        &[
            ("DATABASE_URL", url.clone()),
            ("LIVE_DATABASE_URL", respelled),
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("reach the same database"), "{stderr}");

    // Another database on the same server is not live: the scrub runs.
    let other = fresh_postgres_database().await;
    let out = crate::staging::run(
        &["make-staging", "--yes"],
        &[("DATABASE_URL", url.clone()), ("LIVE_DATABASE_URL", other)],
    );
    assert!(out.status.success(), "{out:?}");
    let db = stowage::db::Database::connect(&url, 1).await.unwrap();
    let (users,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(users, 0);
}
