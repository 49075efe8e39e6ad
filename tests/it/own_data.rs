//! A member's data as theirs: `/profile/export` (one streamed ZIP) and `/profile/delete`
//! (everything of the account, on every instance, in storage too), on both stacks, with
//! storage stopped midway.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use stowage::storage::Sha256Digest;

use crate::helpers::{AppOptions, PASSWORD, STACKS, Stack, TestApp, sample_pdf, spawn_app_with};
use crate::hostile::accounts::{browser, sign_in_at};
use crate::staging::run;

/// A small photo, as an upload would bring it.
fn photo() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 250) as u8, (y % 250) as u8, 60])
    })
    .write_to(&mut out, image::ImageFormat::Jpeg)
    .unwrap();
    out.into_inner()
}

/// "owner" (signed in on the app's client) with an avatar, a resume, a share link, a download
/// of their resume by "bob" and one of bob's resume by them; bob with files of his own.
/// Returns (owner's user id and profile, bob's profile, owner's PDF).
async fn two_members(app: &TestApp) -> ((i64, i64), i64, Vec<u8>) {
    let (owner_id, owner) = app.create_member("owner").await;
    let (_, bob) = app.create_member("bob").await;
    for profile in [owner, bob] {
        stowage::media::store_avatar(
            app.db(),
            app.storages(),
            &app.state.avatar_slots,
            profile,
            photo(),
            1 << 20,
        )
        .await
        .unwrap();
    }
    let pdf = sample_pdf("the owner's");
    app.give_resume(owner, "Zoë CV.pdf", pdf.clone()).await;
    app.give_resume(bob, "bob.pdf", sample_pdf("bob's")).await;
    assert_eq!(
        app.login("owner", PASSWORD, "/").await.status(),
        StatusCode::SEE_OTHER
    );
    let token = app.csrf_token_from("/profile/edit").await;
    let link = app
        .post_form(
            "/profile/share-links",
            &[
                ("csrf_token", &token),
                ("label", "Acme recruiting"),
                ("days", "7"),
            ],
        )
        .await;
    assert_eq!(link.status(), StatusCode::OK);
    // Each downloads the other's resume.
    assert_eq!(
        app.get(&format!("/resume/{bob}")).await.status(),
        StatusCode::FOUND
    );
    let bobs = browser();
    assert_eq!(
        sign_in_at(&bobs, &app.address, "bob", PASSWORD)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let got = bobs
        .get(app.url(&format!("/resume/{owner}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::FOUND);
    app.state.downloads.flush(Duration::from_secs(5)).await;
    ((owner_id, owner), bob, pdf)
}

/// Posts `route` with this session's token and `password`.
async fn post_with_password(app: &TestApp, route: &str, password: &str) -> reqwest::Response {
    let token = app.csrf_token_from("/profile/edit").await;
    app.post_form(route, &[("csrf_token", &token), ("password", password)])
        .await
}

async fn count(app: &TestApp, sql: &str, id: i64) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql)
        .bind(id)
        .fetch_one(app.db().pool())
        .await
        .unwrap();
    n
}

/// The ZIP's entries by name, read back with a ZIP reader (which checks each CRC).
async fn unzip(bytes: Vec<u8>) -> HashMap<String, Vec<u8>> {
    let zip = async_zip::base::read::mem::ZipFileReader::new(bytes)
        .await
        .unwrap();
    let mut files = HashMap::new();
    for index in 0..zip.file().entries().len() {
        let mut reader = zip.reader_with_entry(index).await.unwrap();
        let name = reader.entry().filename().as_str().unwrap().to_owned();
        let mut data = Vec::new();
        reader.read_to_end_checked(&mut data).await.unwrap();
        files.insert(name, data);
    }
    files
}

fn json(files: &HashMap<String, Vec<u8>>, name: &str) -> serde_json::Value {
    serde_json::from_slice(&files[name]).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test]
async fn an_export_holds_every_file_and_record_of_the_member() {
    for stack in STACKS {
        let app = spawn_app_with(stack, AppOptions::default()).await;
        let ((owner_id, owner), _, pdf) = two_members(&app).await;

        let wrong = post_with_password(&app, "/profile/export", "not it").await;
        assert_eq!(
            wrong.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{stack:?}"
        );
        assert!(
            wrong
                .text()
                .await
                .unwrap()
                .contains("That is not your password")
        );

        let response = post_with_password(&app, "/profile/export", PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK, "{stack:?}");
        assert_eq!(response.headers()["content-type"], "application/zip");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let disposition = response.headers()["content-disposition"].to_str().unwrap();
        assert!(
            disposition.starts_with("attachment; filename=\"stowage-owner-"),
            "{disposition}"
        );
        // Streamed: no length known in advance.
        assert!(response.headers().get("content-length").is_none());
        let files = unzip(response.bytes().await.unwrap().to_vec()).await;

        let mut names: Vec<&str> = files.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "avatar.jpg",
                "downloads.json",
                "profile.json",
                "resume/Zoë CV.pdf",
                "share_links.json"
            ],
            "{stack:?}"
        );
        assert_eq!(files["resume/Zoë CV.pdf"], pdf, "{stack:?}");
        let record = app.db().account_record(owner_id).await.unwrap().unwrap();
        let avatar = &files["avatar.jpg"];
        assert_eq!(
            Some(Sha256Digest::of(avatar).to_hex()),
            record.avatar_sha256,
            "the avatar at its largest, as stored"
        );
        let profile = json(&files, "profile.json");
        assert_eq!(profile["username"], "owner");
        assert_eq!(profile["display_name"], "owner display");
        assert_eq!(profile["resume"]["filename"], "Zoë CV.pdf");
        assert_eq!(profile["resume"]["size"], pdf.len());
        assert_eq!(profile["avatar"]["file"], "avatar.jpg");
        let links = json(&files, "share_links.json");
        assert_eq!(links[0]["label"], "Acme recruiting", "{stack:?}");
        assert_eq!(links[0]["downloads"], 0);
        let downloads = json(&files, "downloads.json");
        assert_eq!(downloads["of_my_resume"][0]["who"], "bob", "{stack:?}");
        assert_eq!(downloads["of_my_resume"][0]["through"], "member");
        assert_eq!(downloads["by_me"][0]["whose"], "bob", "{stack:?}");
        assert_eq!(owner, record.profile_id);
    }
}

#[tokio::test]
async fn an_export_with_storage_down_is_a_503_not_a_broken_file() {
    let mut app = spawn_app_with(Stack::PostgresS3, AppOptions::default()).await;
    two_members(&app).await;
    let token = app.csrf_token_from("/profile/edit").await;
    app.s3.as_mut().unwrap().stop().await;
    let response = app
        .post_form(
            "/profile/export",
            &[("csrf_token", &token), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    app.s3.as_mut().unwrap().restart();
}

/// Runs `stowage check-media` against the app; returns its output.
fn check_media(app: &TestApp) -> String {
    let vars: Vec<(&str, String)> = app
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let out = run(&["check-media"], &vars);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_leaves_nothing_of_it_anywhere() {
    for stack in STACKS {
        let app = spawn_app_with(stack, AppOptions::default()).await;
        let ((owner_id, owner), bob, _) = two_members(&app).await;
        let bobs_files: Vec<String> = stowage::media::references(app.db())
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.row_id == bob)
            .map(|r| r.key)
            .collect();
        assert_eq!(bobs_files.len(), 4, "three avatar sizes and a resume");
        // A direct upload issued and sent, never confirmed.
        if stack == Stack::PostgresS3 {
            let bytes = sample_pdf("never confirmed");
            let file = stowage::media::AnnouncedFile {
                size: bytes.len() as u64,
                sha256: Sha256Digest::of(&bytes),
            };
            let (key, _) = stowage::media::issue_direct_upload(
                app.db(),
                app.storages(),
                owner,
                file,
                stowage::config::DirectUploadMethod::Put,
                1 << 20,
                Duration::from_secs(120),
            )
            .await
            .unwrap();
            app.storages()
                .private
                .save(&key, crate::helpers::body(bytes), &Default::default())
                .await
                .unwrap();
        }
        // The owner is signed in on a second device too.
        let phone = browser();
        sign_in_at(&phone, &app.address, "owner", PASSWORD).await;
        let edit = phone.get(app.url("/profile/edit")).send().await.unwrap();
        assert_eq!(edit.status(), StatusCode::OK);

        // The page, then a wrong password: nothing happens.
        let page = app.get_html("/profile/delete").await;
        assert!(page.contains("cannot be undone"), "{page}");
        let wrong = post_with_password(&app, "/profile/delete", "not it").await;
        assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            app.db()
                .find_user_uncached(owner_id)
                .await
                .unwrap()
                .is_some()
        );

        let done = post_with_password(&app, "/profile/delete", PASSWORD).await;
        assert_eq!(done.status(), StatusCode::OK, "{stack:?}");
        let text = done.text().await.unwrap();
        assert!(text.contains("Your account is deleted"), "{text}");
        assert!(!text.contains("Storage did not answer"), "{text}");

        // Rows: none of the owner's left, and no log entry about them either way.
        assert!(
            app.db()
                .find_user_uncached(owner_id)
                .await
                .unwrap()
                .is_none()
        );
        for (sql, id) in [
            ("SELECT COUNT(*) FROM profiles WHERE id = $1", owner),
            (
                "SELECT COUNT(*) FROM share_links WHERE user_id = $1",
                owner_id,
            ),
            (
                "SELECT COUNT(*) FROM downloads WHERE profile_id = $1",
                owner,
            ),
            (
                "SELECT COUNT(*) FROM downloads WHERE member_id = $1",
                owner_id,
            ),
            ("SELECT COUNT(*) FROM sessions WHERE user_id = $1", owner_id),
            (
                "SELECT COUNT(*) FROM direct_uploads WHERE profile_id = $1",
                owner,
            ),
        ] {
            assert_eq!(count(&app, sql, id).await, 0, "{stack:?}: {sql}");
        }
        // Sessions: this one and the other device's are over.
        for client in [&app.client, &phone] {
            let edit = client.get(app.url("/profile/edit")).send().await.unwrap();
            assert_eq!(edit.status(), StatusCode::SEE_OTHER, "{stack:?}");
        }
        // Storage: only bob's files are left, and check-media finds nothing else.
        let mut expected = bobs_files.clone();
        expected.sort();
        assert_eq!(app.media_objects().await, expected, "{stack:?}");
        let report = check_media(&app);
        assert!(
            report.contains("0 dangling, 0 orphans, 0 pending deletion"),
            "{report}"
        );
        // Bob is untouched, and his download log no longer names the owner.
        assert_eq!(
            app.get(&format!("/profiles/{bob}")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            count(
                &app,
                "SELECT COUNT(*) FROM downloads WHERE profile_id = $1",
                bob
            )
            .await,
            0,
            "the owner's download of bob's resume went with the owner"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_storage_stopped_the_deletion_finishes_when_it_is_back() {
    let mut app = spawn_app_with(Stack::PostgresS3, AppOptions::default()).await;
    let ((owner_id, _), _, _) = two_members(&app).await;
    let before = app.media_objects().await;
    let token = app.csrf_token_from("/profile/edit").await;

    app.s3.as_mut().unwrap().stop().await;
    let done = app
        .post_form(
            "/profile/delete",
            &[("csrf_token", &token), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    let text = done.text().await.unwrap();
    assert!(
        text.contains("Storage did not answer for 4 of your files"),
        "{text}"
    );
    // Nothing half-deleted: the account is gone whole, its objects are recorded.
    assert!(
        app.db()
            .find_user_uncached(owner_id)
            .await
            .unwrap()
            .is_none()
    );
    let pending = app.db().pending_deletions().await.unwrap();
    assert_eq!(pending.len(), 4, "{pending:?}");
    assert!(pending.iter().all(|d| d.attempts == 1), "{pending:?}");

    app.s3.as_mut().unwrap().restart();
    // Still there, and check-media says why.
    assert_eq!(app.media_objects().await, before);
    let report = check_media(&app);
    assert!(report.contains("0 orphans, 4 pending deletion"), "{report}");
    // The retry `serve` runs every few seconds, with its back-off elapsed.
    let later = stowage::db::now() + 3600;
    let failed = stowage::media::retry_pending_deletions(app.db(), app.storages(), later).await;
    assert_eq!(failed, 0);
    assert!(app.db().pending_deletions().await.unwrap().is_empty());
    let report = check_media(&app);
    assert!(
        report.contains("0 dangling, 0 orphans, 0 pending deletion"),
        "{report}"
    );
    assert_eq!(app.media_objects().await, app.media_references().await);
}
