//! The download log: every redirect to a resume, by a member or a share link, seen by the
//! resume's owner, exported by `stowage downloads`, and kept across SIGTERM.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{AppOptions, PASSWORD, STACKS, TestApp, sample_pdf, spawn_app_with};
use crate::hostile::accounts::{browser, sign_in_at};
use crate::process::{base_vars, binary, client, first_profile_id, free_port, serve, sign_up_as};

/// The owner's edit page once it lists `expected` downloads in all (the log writes in batches).
async fn page_with_downloads(app: &TestApp, expected: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = app.get_html("/profile/edit").await;
        if page.contains(&format!("{expected} in all")) || Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_owner_sees_who_downloaded_their_resume_by_member_and_by_link() {
    for stack in STACKS {
        let app = spawn_app_with(stack, AppOptions::default()).await;
        let (_, profile) = app.create_member("owner").await;
        app.create_member("reader").await;
        app.give_resume(profile, "Owner CV.pdf", sample_pdf("log"))
            .await;

        // A member downloads it twice.
        let reader = browser();
        sign_in_at(&reader, &app.address, "reader", PASSWORD).await;
        for _ in 0..2 {
            let got = reader
                .get(app.url(&format!("/resume/{profile}")))
                .header("x-request-id", "req-reader-1")
                .send()
                .await
                .unwrap();
            assert_eq!(got.status(), StatusCode::FOUND, "{stack:?}");
        }
        // Someone outside the site, through a share link.
        app.login("owner", PASSWORD, "/").await;
        let token = app.csrf_token_from("/profile/edit").await;
        let made = app
            .post_form(
                "/profile/share-links",
                &[
                    ("csrf_token", &token),
                    ("label", "Acme recruiting"),
                    ("days", "7"),
                ],
            )
            .await
            .text()
            .await
            .unwrap();
        let start = made.find("/s/").unwrap();
        let link = &made[start..start + 3 + 64];
        let opened = app
            .anonymous_client()
            .get(app.url(link))
            .send()
            .await
            .unwrap();
        assert_eq!(opened.status(), StatusCode::FOUND, "{stack:?}");

        let page = page_with_downloads(&app, 3).await;
        assert!(page.contains("3 in all"), "{stack:?}: {page}");
        let table = &page[page.find("class=\"downloads\"").unwrap()..];
        let reader_at = table.find("<td>reader</td>").expect("the member");
        let link_at = table
            .find("share link “Acme recruiting”")
            .expect("the link");
        assert!(link_at < reader_at, "{stack:?}: newest first");

        let log = app.db().downloads_since(0).await.unwrap();
        assert_eq!(log.len(), 3, "{stack:?}");
        assert!(log.iter().all(|d| d.owner == "owner"));
        assert_eq!(log[0].download.request_id, "req-reader-1");
        assert!(log[2].download.share_link_id.is_some() && log[2].download.member_id.is_none());
        assert!(
            !log[2].download.request_id.is_empty(),
            "a generated request id"
        );

        // Entries older than DOWNLOAD_LOG_DAYS go.
        sqlx::query("UPDATE downloads SET at = at - 400 * 86400 WHERE member_id IS NOT NULL")
            .execute(app.db().pool())
            .await
            .unwrap();
        let removed = app
            .db()
            .delete_downloads_before(stowage::db::now() - 365 * 86_400)
            .await
            .unwrap();
        assert_eq!(removed, 2, "{stack:?}");
    }
}

#[tokio::test]
async fn downloads_just_before_sigterm_are_written_and_exported_as_csv() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let vars = base_vars(&dir, free_port());
    let run = |args: &[&str]| {
        Command::new(binary())
            .args(args)
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    };
    assert!(run(&["migrate"]).status.success());
    let seeded = run(&["seed-demo", "--members", "2", "--resumes", "100"]);
    assert!(seeded.status.success(), "{seeded:?}");

    let mut served = serve(vars.clone(), dir.clone()).await;
    let (http, jar) = client();
    sign_up_as(
        &http,
        &jar,
        &served,
        "recruiter",
        "quartz ferret lantern 41",
    )
    .await;
    let profile = first_profile_id(&http, &served).await;
    // 40 downloads at once, then SIGTERM as soon as the last answer is in.
    let downloads = (0..40).map(|_| http.get(served.url(&format!("/resume/{profile}"))).send());
    for answer in futures_util::future::join_all(downloads).await {
        assert_eq!(answer.unwrap().status(), StatusCode::FOUND);
    }
    served.signal("TERM");
    let status = served.exit_within(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}:\n{}", served.output());

    let export = run(&["downloads", "--since", "2020-01-01"]);
    assert!(export.status.success(), "{export:?}");
    let csv = String::from_utf8(export.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "at,profile_id,owner,who,how,request_id");
    assert_eq!(lines.len(), 41, "every download, none lost:\n{csv}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(&format!(",{profile},")) && l.contains(",recruiter,member,")),
        "{csv}"
    );
    let none = run(&["downloads", "--since", "2999-01-01"]);
    assert_eq!(String::from_utf8(none.stdout).unwrap().lines().count(), 1);
    let bad = run(&["downloads", "--since", "last week"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a date"));
}

#[tokio::test]
async fn a_batch_keeps_text_exactly_and_leaves_out_entries_of_deleted_rows() {
    for stack in STACKS {
        let app = spawn_app_with(stack, AppOptions::default()).await;
        let (member, profile) = app.create_member("owner").await;
        let (gone, gone_profile) = app.create_member("leaving").await;
        let db = app.db();
        assert!(
            db.delete_account(gone, 0, stowage::media::keys::avatar_keys)
                .await
                .unwrap()
                .is_some()
        );
        let entry =
            |profile_id, member_id, who: &str, request_id: &str| stowage::db::downloads::Download {
                profile_id,
                member_id,
                share_link_id: None,
                who: who.into(),
                request_id: request_id.into(),
                at: 1_800_000_000,
            };
        // What COPY's text format escapes, as a request id can carry it (a tab is a valid
        // header byte), beside entries naming a deleted profile and a deleted member.
        let odd = entry(profile, Some(member), "owner \\N x\\y", "r\t1\\n\n\r2");
        db.insert_downloads(&[
            entry(gone_profile, Some(member), "owner", "to-a-deleted-profile"),
            odd.clone(),
            entry(profile, Some(gone), "leaving", "by-a-deleted-member"),
        ])
        .await
        .unwrap();
        let (kept, total) = db.downloads_of(profile, 10).await.unwrap();
        assert_eq!((kept, total), (vec![odd], 1), "{stack:?}");
        let (orphans,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM downloads WHERE profile_id = $1 OR member_id = $2",
        )
        .bind(gone_profile)
        .bind(gone)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(orphans, 0, "{stack:?}");
    }
}

/// An account deleted while a batch naming it is being written (the test holds the lock a
/// batch takes, and an entry of theirs not yet committed) waits for the batch, then deletes
/// that entry too: no log entry outlives the member. PostgreSQL only; SQLite has one writer
/// at a time.
#[tokio::test]
async fn deleting_an_account_waits_for_a_batch_naming_it_and_deletes_its_entries() {
    let app = spawn_app_with(crate::helpers::Stack::PostgresS3, AppOptions::default()).await;
    let (_, profile) = app.create_member("owner").await;
    let (reader, _) = app.create_member("reader").await;
    let db = app.db();
    let mut batch = db.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM pg_advisory_xact_lock_shared($1)")
        .bind(stowage::db::downloads::DELETION_LOCK)
        .execute(&mut *batch)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO downloads (profile_id, member_id, share_link_id, who, at, hits, \
         request_ids) VALUES ($1, $2, NULL, 'reader', 1800000000, 1, '[\"mid-batch\"]')",
    )
    .bind(profile)
    .bind(reader)
    .execute(&mut *batch)
    .await
    .unwrap();
    let deleting = tokio::spawn({
        let db = db.clone();
        async move {
            db.delete_account(reader, 0, stowage::media::keys::avatar_keys)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !deleting.is_finished(),
        "the deletion did not wait for the batch"
    );
    batch.commit().await.unwrap();
    assert!(deleting.await.unwrap().unwrap().is_some());
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM downloads WHERE member_id = $1")
        .bind(reader)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(left, 0, "an entry of the deleted member outlived them");
}

/// An export's pages, across their edges: rows that share a second are split between pages,
/// and every download comes once, in order, on both stacks.
#[tokio::test]
async fn export_pages_cover_the_log_once_in_order_when_rows_share_a_second() {
    use stowage::db::downloads::{Download, PAGE_ROWS, Side};
    for stack in STACKS {
        let app = spawn_app_with(stack, AppOptions::default()).await;
        let (_, profile) = app.create_member("owner").await;
        // Seven rows a second (each its own `who`, so its own row), two and a half pages.
        let count = 2 * PAGE_ROWS as usize + 203;
        let entries: Vec<Download> = (0..count)
            .map(|i| Download {
                profile_id: profile,
                member_id: None,
                share_link_id: None,
                who: format!("w{i:05}"),
                request_id: format!("r{i:05}"),
                at: 1_800_000_000 + i as i64 / 7,
            })
            .collect();
        app.db().insert_downloads(&entries).await.unwrap();
        let (mut seen, mut after, mut pages) = (Vec::new(), None, 0);
        loop {
            let (page, next) = app
                .db()
                .downloads_page(Side::Of, profile, after)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            pages += 1;
            assert!(page.len() <= PAGE_ROWS as usize, "{stack:?}");
            seen.extend(page.into_iter().map(|d| d.download.request_id));
            after = next;
        }
        let expected: Vec<String> = entries.into_iter().map(|d| d.request_id).collect();
        assert_eq!(seen, expected, "{stack:?}");
        assert_eq!(pages, 3, "{stack:?}");
    }
}
