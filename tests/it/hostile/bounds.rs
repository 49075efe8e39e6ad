//! The hostile corpus, part three: bounds in bytes, rows and seconds. What a client sends is
//! kept or echoed only within its bound, machines do not spend a member's share links, and a
//! command that refuses a database has not changed it first.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{
    AppOptions, PASSWORD, STACKS, eventually, fresh_postgres_database, sample_pdf, spawn_app_with,
};
use crate::hostile::accounts::{browser, sign_in_at};
use crate::share_links::{create_link, owner_with_resume};

/// The logged downloads once `n` have been written, polled to a deadline.
async fn logged(
    app: &crate::helpers::TestApp,
    n: usize,
) -> Vec<stowage::db::downloads::ExportedDownload> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = app.db().downloads_since(0).await.unwrap();
        if log.len() >= n || Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_request_id_of_any_size_or_shape_is_neither_kept_nor_echoed() {
    for stack in STACKS {
        let app = spawn_app_with(stack, AppOptions::default()).await;
        let (_, profile) = app.create_member("owner").await;
        app.create_member("reader").await;
        app.give_resume(profile, "CV.pdf", sample_pdf("ids")).await;
        let reader = browser();
        sign_in_at(&reader, &app.address, "reader", PASSWORD).await;
        let huge = "A".repeat(60_000);
        let sent = [
            huge.as_str(),
            "a b<script>",
            "../../etc/passwd",
            "router-shaped.id_42",
        ];
        for id in sent {
            let got = reader
                .get(app.url(&format!("/resume/{profile}")))
                .header("x-request-id", id)
                .send()
                .await
                .unwrap();
            assert_eq!(got.status(), StatusCode::FOUND, "{stack:?}");
            let echoed = got.headers()["x-request-id"].to_str().unwrap();
            assert!(
                echoed.len() <= 200,
                "{stack:?}: echoed {} bytes",
                echoed.len()
            );
            if id == "router-shaped.id_42" {
                assert_eq!(echoed, id, "{stack:?}: a router's id is kept");
            } else {
                assert_ne!(echoed, id, "{stack:?}");
                uuid::Uuid::parse_str(echoed).expect("a generated id");
            }
        }
        let log = logged(&app, sent.len()).await;
        assert_eq!(log.len(), sent.len(), "{stack:?}");
        let kept: usize = log.iter().map(|d| d.download.request_id.len()).sum();
        assert!(
            kept <= 200 * sent.len(),
            "{stack:?}: the log kept {kept} bytes of ids"
        );
        assert!(
            log.iter().all(|d| !d.download.request_id.contains('A')),
            "{stack:?}"
        );
        assert_eq!(
            log.last().unwrap().download.request_id,
            "router-shaped.id_42"
        );
        // The bytes in the database, not only what the reader returns.
        let stored = app
            .number("SELECT CAST(COALESCE(SUM(LENGTH(request_ids)), 0) AS BIGINT) FROM downloads")
            .await;
        assert!(
            stored < 1_000,
            "{stack:?}: {stored} bytes of request ids stored"
        );
    }
}

async fn link_downloads(app: &crate::helpers::TestApp) -> i64 {
    app.number("SELECT CAST(SUM(downloads) AS BIGINT) FROM share_links")
        .await
}

#[tokio::test]
async fn heads_and_link_previews_never_spend_a_share_link() {
    for stack in STACKS {
        let (app, _, _) = owner_with_resume(stack).await;
        let link = create_link(&app, "Acme recruiting", "1").await;
        let stranger = app.anonymous_client();
        for _ in 0..3 {
            let head = stranger.head(app.url(&link)).send().await.unwrap();
            assert_eq!(head.status(), StatusCode::OK, "{stack:?}");
            assert!(
                head.headers().get("location").is_none(),
                "{stack:?}: nothing signed"
            );
            assert_eq!(head.headers()["referrer-policy"], "no-referrer");
        }
        for bot in [
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "facebookexternalhit/1.1",
            "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        ] {
            let preview = stranger
                .get(app.url(&link))
                .header("user-agent", bot)
                .send()
                .await
                .unwrap();
            assert_eq!(preview.status(), StatusCode::OK, "{stack:?}: {bot}");
            assert!(preview.headers().get("location").is_none());
            let page = preview.text().await.unwrap();
            assert!(page.contains("Open this link in a browser"), "{page}");
            assert!(!page.contains("CV.pdf") && !page.contains(".pdf"), "{page}");
        }
        assert_eq!(link_downloads(&app).await, 0, "{stack:?}: nothing counted");
        // The one download a person makes is still there, and then the link is spent.
        let opened = stranger.get(app.url(&link)).send().await.unwrap();
        assert_eq!(opened.status(), StatusCode::FOUND, "{stack:?}");
        assert_eq!(link_downloads(&app).await, 1);
        let head = stranger.head(app.url(&link)).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::GONE, "{stack:?}");
        let again = stranger.get(app.url(&link)).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::GONE, "{stack:?}");
        let unknown = stranger
            .head(app.url(&format!("/s/{}", "5e".repeat(32))))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND, "{stack:?}");
        assert_eq!(link_downloads(&app).await, 1);
    }
}

#[tokio::test]
async fn a_flood_on_one_limited_link_never_exceeds_its_limit() {
    for stack in STACKS {
        let (app, _, _) = owner_with_resume(stack).await;
        let link = create_link(&app, "Flood", "20").await;
        let client = app.anonymous_client();
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (client, url) = (client.clone(), app.url(&link));
            tasks.push(tokio::spawn(async move {
                client.get(url).send().await.unwrap().status()
            }));
        }
        let mut found = 0;
        for task in tasks {
            let status = task.await.unwrap();
            assert!(
                matches!(
                    status,
                    StatusCode::FOUND | StatusCode::GONE | StatusCode::SERVICE_UNAVAILABLE
                ),
                "{stack:?}: {status}"
            );
            found += usize::from(status == StatusCode::FOUND);
        }
        let counted = link_downloads(&app).await;
        assert_eq!(counted, found as i64, "{stack:?}: one count per redirect");
        assert!(counted <= 20, "{stack:?}: {counted}");
    }
}

/// Tables and columns of the database at `url`, and the migrations it records.
async fn schema(url: &str) -> Vec<String> {
    let db = stowage::db::Database::connect(url, 1).await.unwrap();
    let mut rows: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name || '.' || column_name || ' ' || data_type FROM \
         information_schema.columns WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let migrations: Vec<(String,)> =
        sqlx::query_as("SELECT CAST(version AS TEXT) FROM _sqlx_migrations ORDER BY version")
            .fetch_all(db.pool())
            .await
            .unwrap();
    rows.extend(migrations);
    let users: (String,) = sqlx::query_as("SELECT 'users: ' || CAST(count(*) AS TEXT) FROM users")
        .fetch_one(db.pool())
        .await
        .unwrap();
    rows.push(users);
    db.close().await;
    rows.into_iter().map(|(r,)| r).collect()
}

#[tokio::test]
async fn commands_that_refuse_a_database_one_migration_behind_leave_it_unchanged() {
    let url = fresh_postgres_database().await;
    let db = stowage::db::Database::connect(&url, 1).await.unwrap();
    let mut behind = sqlx::migrate::Migrator::new(std::path::Path::new("migrations/postgres"))
        .await
        .unwrap();
    let all = behind.migrations.len();
    behind.migrations = Cow::Owned(behind.migrations[..all - 1].to_vec());
    behind.run(db.pool()).await.unwrap();
    db.close().await;
    let before = schema(&url).await;
    assert!(before.iter().any(|r| r.starts_with("users.")));

    let live = vec![
        ("DATABASE_URL", url.clone()),
        ("LIVE_DATABASE_URL", url.clone()),
    ];
    let make = crate::staging::run(&["make-staging", "--yes"], &live);
    let stderr = String::from_utf8_lossy(&make.stderr);
    assert!(!make.status.success(), "{stderr}");
    assert!(stderr.contains("reach the same database"), "{stderr}");
    let own = vec![("DATABASE_URL", url.clone())];
    let make = crate::staging::run(&["make-staging", "--yes"], &own);
    let stderr = String::from_utf8_lossy(&make.stderr);
    assert!(stderr.contains("stowage migrate"), "{stderr}");
    let name = url.rsplit('/').next().unwrap().to_owned();
    let mark = crate::staging::run(&["mark-staging", "--database", &name], &own);
    let stderr = String::from_utf8_lossy(&mark.stderr);
    assert!(
        !mark.status.success() && stderr.contains("stowage migrate"),
        "{stderr}"
    );
    let mut create = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["createuser", "mallory", "--password-stdin"])
        .env("DATABASE_URL", &url)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        writeln!(create.stdin.take().unwrap(), "quartz ferret lantern 41").unwrap();
    }
    let create = create.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&create.stderr);
    assert!(
        !create.status.success() && stderr.contains("stowage migrate"),
        "{stderr}"
    );

    assert_eq!(
        schema(&url).await,
        before,
        "the refused database is unchanged"
    );
}

/// The failures counted in `bucket`, and when its window started.
async fn bucket(app: &crate::helpers::TestApp, name: &str) -> Option<(i64, i64)> {
    sqlx::query_as("SELECT failures, window_started_at FROM login_failures WHERE bucket = $1")
        .bind(name)
        .fetch_optional(app.db().pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_locked_username_is_one_bucket_in_every_spelling_and_is_only_read() {
    for stack in STACKS {
        let app = spawn_app_with(stack, AppOptions::default()).await;
        app.create_member("ada").await;
        // The member is signed in before anyone attacks the name.
        let member = browser();
        let signed = sign_in_at(&member, &app.address, "ada", PASSWORD).await;
        assert_eq!(signed.status(), StatusCode::SEE_OTHER, "{stack:?}");

        // A stranger guesses under every spelling of the name: one bucket, locked at the
        // sixth attempt (the limit is 5).
        let stranger = browser();
        let spellings = [
            "ada",
            "ADA",
            "\u{FF21}\u{FF24}\u{FF21}",
            "Ada",
            "aDa",
            "\u{FF41}da",
        ];
        for (i, name) in spellings.iter().enumerate() {
            let got = sign_in_at(&stranger, &app.address, name, "wrong password").await;
            let want = if i < 5 {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            assert_eq!(got.status(), want, "{stack:?}: attempt {i} as {name:?}");
        }
        let locked = bucket(&app, "user:ada").await.expect("the name's bucket");
        assert_eq!(locked.0, 6, "{stack:?}");
        let buckets = app
            .number("SELECT count(*) FROM login_failures WHERE bucket LIKE 'user:%'")
            .await;
        assert_eq!(
            buckets, 1,
            "{stack:?}: no spelling opened a bucket of its own"
        );
        let address = bucket(&app, "addr:127.0.0.1").await.unwrap();

        // Locked: refused, and nothing written, however often.
        for _ in 0..10 {
            let got = sign_in_at(&stranger, &app.address, "ADA", "wrong password").await;
            assert_eq!(got.status(), StatusCode::TOO_MANY_REQUESTS, "{stack:?}");
            assert!(got.headers().contains_key("retry-after"));
        }
        assert_eq!(bucket(&app, "user:ada").await, Some(locked), "{stack:?}");
        assert_eq!(
            bucket(&app, "addr:127.0.0.1").await,
            Some(address),
            "{stack:?}"
        );
        // Even the right password waits for the window.
        let right = sign_in_at(&stranger, &app.address, "ada", PASSWORD).await;
        assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS, "{stack:?}");

        // The member is not locked out of their own account: the password asked again
        // before an export has a bucket of its own.
        let page = member.get(app.url("/profile/edit")).send().await.unwrap();
        let token = crate::helpers::extract_csrf(&page.text().await.unwrap()).unwrap();
        let export = member
            .post(app.url("/profile/export"))
            .form(&[("csrf_token", token.as_str()), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(export.status(), StatusCode::OK, "{stack:?}");
        assert_eq!(export.headers()["content-type"], "application/zip");
    }
}

#[tokio::test]
async fn a_name_that_only_lowercases_like_a_member_is_not_that_member() {
    for stack in STACKS {
        let app = spawn_app_with(stack, AppOptions::default()).await;
        app.create_member("admin").await;
        // `İ` lowercases to "i" in some SQL locales: it must not reach "admin".
        let stranger = browser();
        let got = sign_in_at(&stranger, &app.address, "ADM\u{130}N", PASSWORD).await;
        assert_eq!(got.status(), StatusCode::UNAUTHORIZED, "{stack:?}");
        // Fullwidth letters are the same name (NFKC), as Django's normalize_username has it.
        let got = sign_in_at(&stranger, &app.address, "\u{FF41}dmin", PASSWORD).await;
        assert_eq!(got.status(), StatusCode::SEE_OTHER, "{stack:?}");
    }
}

/// Reads HTTP/2 frames from `stream`, answering the server's SETTINGS and PINGs as a live
/// client does, until the server closes the connection; returns whether it did within
/// `limit`, and whether a GOAWAY came first.
async fn h2_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> (bool, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + limit;
    let mut goaway = false;
    loop {
        let mut head = [0u8; 9];
        match tokio::time::timeout_at(deadline, stream.read_exact(&mut head)).await {
            Err(_) => return (false, goaway),
            Ok(Err(_)) => return (true, goaway),
            Ok(Ok(_)) => {}
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        if tokio::time::timeout_at(deadline, stream.read_exact(&mut payload))
            .await
            .map_or(true, |read| read.is_err())
        {
            return (true, goaway);
        }
        let (kind, flags) = (head[3], head[4]);
        let reply: Option<Vec<u8>> = match kind {
            // SETTINGS, not an ACK: acknowledge.
            4 if flags & 1 == 0 => Some(vec![0, 0, 0, 4, 1, 0, 0, 0, 0]),
            // PING, not an ACK: answer with its payload.
            6 if flags & 1 == 0 => {
                let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                ack.extend_from_slice(&payload);
                Some(ack)
            }
            7 => {
                goaway = true;
                None
            }
            _ => None,
        };
        if let Some(reply) = reply
            && stream.write_all(&reply).await.is_err()
        {
            return (true, goaway);
        }
    }
}

#[tokio::test]
async fn an_idle_h2c_connection_is_closed_even_when_it_answers_pings() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(
        crate::helpers::Stack::SqliteFilesystem,
        AppOptions::default(),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port()))
        .await
        .unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    stream.write_all(&hello).await.unwrap();
    let idle = stowage::web::CONNECTION_IDLE;
    let (closed, goaway) = h2_until_closed(&mut stream, idle * 3).await;
    assert!(
        closed,
        "an idle HTTP/2 connection is still open after {:?}",
        idle * 3
    );
    assert!(goaway, "closed with a GOAWAY, not cut");
}

#[tokio::test]
async fn past_max_connections_a_new_connection_waits_until_one_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let options = AppOptions {
        vars: vec![("MAX_CONNECTIONS", "2".into())],
    };
    let app = spawn_app_with(crate::helpers::Stack::SqliteFilesystem, options).await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", app.port()));
    let held = [connect().await.unwrap(), connect().await.unwrap()];
    let mut third = connect().await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: stowage.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let waited =
        tokio::time::timeout(Duration::from_millis(1500), third.read_to_end(&mut answer)).await;
    assert!(
        waited.is_err(),
        "answered past the limit: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut answer))
        .await
        .expect("answered once a place was free")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_database_connection_gone_silent_costs_503s_not_a_restart() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (proxy, url) = crate::tcp_proxy::proxied_postgres_database().await;
    let options = AppOptions {
        vars: vec![
            ("DATABASE_URL", url),
            ("DATABASE_POOL_SIZE", "4".into()),
            ("DATABASE_STATEMENT_TIMEOUT_SECS", "2".into()),
            ("REQUEST_TIMEOUT_SECS", "20".into()),
            // Every signed-in request reads its session from the database.
            ("CACHE_TTL_SECS", "0".into()),
        ],
    };
    let app =
        Arc::new(crate::uploads::member_app(crate::helpers::Stack::PostgresS3, options).await);
    let profile = app.ada_profile().await;
    app.give_resume(profile.id, "cv.pdf", sample_pdf("silent"))
        .await;
    let resume = format!("/resume/{}", profile.id);
    assert_eq!(app.get(&resume).await.status(), StatusCode::FOUND);

    // Signed-in requests keep the pool's connections busy, so that the freeze finds
    // statements on their way.
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (app, stop, made, resume) = (app.clone(), stop.clone(), made.clone(), resume.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = app.get(&resume).await;
                made.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            made.load(Ordering::Relaxed) >= 20
        })
        .await
    );

    proxy.freeze();
    // A signed-in request gets the database's 503 (not the request's time limit).
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let answered = eventually(Duration::from_secs(15), || {
        let (app, resume, seen) = (app.clone(), resume.clone(), seen.clone());
        async move {
            let response = app.get(&resume).await;
            let status = response.status();
            let page = format!("{status}: {}", response.text().await.unwrap_or_default());
            let database =
                status == StatusCode::SERVICE_UNAVAILABLE && page.contains("not answering");
            *seen.lock().unwrap() = page;
            database
        }
    })
    .await;
    assert!(
        answered,
        "no database 503 while it was silent: {}",
        seen.lock().unwrap()
    );
    let not_ready = eventually(Duration::from_secs(15), || async {
        app.get("/readyz").await.status() == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(
        not_ready,
        "/readyz said ready while the database was silent"
    );

    // New connections flow again; the silent ones stay silent. No restart.
    proxy.thaw();
    let back = eventually(Duration::from_secs(30), || async {
        app.get(&resume).await.status() == StatusCode::FOUND
            && app.get("/readyz").await.status() == StatusCode::OK
            && app.get("/profile/edit").await.status() == StatusCode::OK
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(back, "the instance did not come back without a restart");
}

#[tokio::test]
async fn past_export_concurrency_an_export_is_a_503_that_counts_nothing() {
    let options = AppOptions {
        vars: vec![("EXPORT_CONCURRENCY", "1".into())],
    };
    let app = crate::uploads::member_app(crate::helpers::Stack::SqliteFilesystem, options).await;
    let profile = app.ada_profile().await;
    // Large enough that an export left unread stays open, its place held.
    let pdf = crate::helpers::pdf_of_size("export", 8 * 1024 * 1024);
    app.give_resume(profile.id, "cv.pdf", pdf).await;
    let export = || async {
        let token = app.csrf_token_from("/profile/edit").await;
        app.post_form(
            "/profile/export",
            &[("csrf_token", &token), ("password", PASSWORD)],
        )
        .await
    };
    let first = export().await;
    assert_eq!(first.status(), StatusCode::OK);
    let buckets = || app.number("SELECT count(*) FROM login_failures");
    let before = buckets().await;
    let second = export().await;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(second.headers().contains_key("retry-after"));
    assert!(
        second
            .text()
            .await
            .unwrap()
            .contains("Other exports are being prepared")
    );
    assert_eq!(buckets().await, before, "the refusal counted nothing");
    // The first one ends (its client goes): the place is free again.
    drop(first);
    let freed = eventually(Duration::from_secs(20), || async {
        export().await.status() == StatusCode::OK
    })
    .await;
    assert!(freed, "the export's place was not given back");
}
