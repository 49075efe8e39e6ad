//! Building staging from live: `make-staging` (guards, scrub), `copy-media` (a live bucket on
//! its own S3-compatible server read with a read-only key, into S3 or the filesystem),
//! `check-media`.

use std::collections::HashMap;
use std::process::{Command, Output};

use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use bytes::Bytes;
use stowage::config::LiveConfig;
use stowage::db::{Database, MediaRef};
use stowage::jobs::staging::{self, CopyOptions, MediaStorages, SOURCE_ETAG};
use stowage::storage::{SaveOptions, Sha256Digest, Storage, StorageError, Storages};

use crate::garage::TestS3;
use crate::helpers::{AppOptions, STACKS, Stack, TestApp, body, sample_pdf, spawn_app_with};

const BIN: &str = env!("CARGO_BIN_EXE_stowage");

/// A live instance's media: its own bucket and keys (and front) on the run's Garage, filled
/// with the app key; `copy-media` reads it with the read-only one.
struct Live {
    s3: TestS3,
    bucket: String,
}

impl Live {
    async fn start() -> Self {
        let s3 = TestS3::new("live").await;
        Self {
            bucket: s3.bucket.clone(),
            s3,
        }
    }

    /// Stores an object the way live stowage did.
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str, disposition: Option<&str>) {
        self.s3
            .client()
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(SdkByteStream::from(bytes))
            .content_type(content_type)
            .cache_control("max-age=86400")
            .set_content_disposition(disposition.map(str::to_owned))
            .send()
            .await
            .unwrap();
    }

    /// The variables that point `copy-media` at this live storage, with the read-only key.
    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LIVE_AWS_STORAGE_BUCKET_NAME", self.bucket.clone()),
            (
                "LIVE_READ_ONLY_ACCESS_KEY_ID",
                self.s3.read_only_access_key.clone(),
            ),
            (
                "LIVE_READ_ONLY_SECRET_KEY",
                self.s3.read_only_secret_key.clone(),
            ),
            ("LIVE_AWS_S3_ENDPOINT_URL", self.s3.endpoint.clone()),
        ]
    }

    /// The live storages as `copy-media` reaches them.
    fn storages(&self) -> MediaStorages {
        let vars: HashMap<String, String> = self
            .vars()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let live = LiveConfig::from_vars(&vars).unwrap().s3.unwrap();
        let (public, private) = Storages::s3_media(&live, None);
        MediaStorages { public, private }
    }
}

fn staging_storages(app: &TestApp) -> MediaStorages {
    MediaStorages {
        public: app.storages().public.clone(),
        private: app.storages().private.clone(),
    }
}

fn png(marker: u8) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(std::iter::repeat_n(marker, 2000));
    bytes
}

/// Live holds ada's avatar and resume and bob's resume; carol's avatar row points at an
/// object live lost, and her resume reference is empty. Returns the references.
async fn seed(app: &TestApp, live: &Live) -> Vec<MediaRef> {
    let (_, ada) = app.create_member("ada").await;
    let (_, bob) = app.create_member("bob").await;
    let (_, carol) = app.create_member("carol").await;
    let disposition = "attachment; filename=\"ada.pdf\"";
    live.put(&format!("avatars/{ada}/a.png"), png(1), "image/png", None)
        .await;
    live.put(
        &format!("private/resumes/{ada}/r.pdf"),
        sample_pdf("ada"),
        "application/pdf",
        Some(disposition),
    )
    .await;
    live.put(
        &format!("private/resumes/{bob}/r.pdf"),
        sample_pdf("bob"),
        "application/pdf",
        None,
    )
    .await;
    let db = app.db();
    let sha256 = |bytes: &[u8]| Sha256Digest::of(bytes).to_hex();
    db.set_avatar(
        ada,
        &format!("avatars/{ada}/a.png"),
        None,
        "image/png",
        2008,
        &sha256(&png(1)),
    )
    .await
    .unwrap();
    let (ada_pdf, bob_pdf) = (sha256(&sample_pdf("ada")), sha256(&sample_pdf("bob")));
    db.set_resume(ada, &format!("resumes/{ada}/r.pdf"), "ada.pdf", 1, &ada_pdf)
        .await
        .unwrap();
    db.set_resume(bob, &format!("resumes/{bob}/r.pdf"), "bob.pdf", 1, &bob_pdf)
        .await
        .unwrap();
    let lost = sha256(&png(2));
    db.set_avatar(
        carol,
        &format!("avatars/{carol}/lost.png"),
        None,
        "image/png",
        1,
        &lost,
    )
    .await
    .unwrap();
    db.set_resume(carol, "", "", 0, "").await.unwrap();
    stowage::media::references(db).await.unwrap()
}

/// copy-media with its defaults.
async fn copy(
    references: &[MediaRef],
    live: &MediaStorages,
    staging: &MediaStorages,
) -> staging::CopyReport {
    staging::copy_media(references, live, staging, &CopyOptions::default(), &())
        .await
        .unwrap()
}

async fn read(storage: &dyn Storage, key: &str) -> Vec<u8> {
    use futures_util::TryStreamExt;
    let chunks: Vec<Bytes> = storage
        .open(key)
        .await
        .unwrap()
        .body
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
}

#[tokio::test]
async fn copy_media_copies_every_reference_with_its_metadata_and_reports_the_missing() {
    for stack in STACKS {
        let live = Live::start().await;
        let app = spawn_app_with(stack, AppOptions::default()).await;
        let references = seed(&app, &live).await;
        assert_eq!(references.len(), 4, "the empty reference is skipped");
        let (live_media, staging) = (live.storages(), staging_storages(&app));

        // The live key only reads.
        let options = SaveOptions::default();
        let write = live_media
            .public
            .save("avatars/x.png", body(png(9)), &options);
        assert!(
            matches!(write.await, Err(StorageError::Refused(_))),
            "the read-only key cannot write, and trying again will not help"
        );

        let report = copy(&references, &live_media, &staging).await;
        assert_eq!(report.copied, 3, "{stack:?}");
        assert_eq!(report.failed.len(), 1);
        let failure = &report.failed[0];
        assert_eq!(failure.reference.field, "avatar_key");
        assert!(failure.reference.key.ends_with("/lost.png"));
        assert!(failure.error.contains("missing"), "{}", failure.error);

        for reference in references.iter().filter(|r| !r.key.ends_with("lost.png")) {
            let (from, to) = if reference.is_private() {
                (&live_media.private, &staging.private)
            } else {
                (&live_media.public, &staging.public)
            };
            assert_eq!(
                read(to.as_ref(), &reference.key).await,
                read(from.as_ref(), &reference.key).await
            );
            if stack == Stack::PostgresS3 {
                let (source, copy) = (
                    from.head(&reference.key).await.unwrap(),
                    to.head(&reference.key).await.unwrap(),
                );
                assert_eq!(copy.content_type, source.content_type, "{}", reference.key);
                assert_eq!(copy.cache_control.as_deref(), Some("max-age=86400"));
                assert_eq!(copy.content_disposition, source.content_disposition);
                assert_eq!(copy.metadata.get(SOURCE_ETAG), source.etag.as_ref());
            }
        }
        // Nothing left to do: everything is skipped.
        let again = copy(&references, &live_media, &staging).await;
        assert_eq!((again.copied, again.skipped), (0, 3), "{stack:?}");
    }
}

#[tokio::test]
async fn an_interrupted_copy_finishes_without_copying_twice() {
    for stack in STACKS {
        let live = Live::start().await;
        let app = spawn_app_with(stack, AppOptions::default()).await;
        let references = seed(&app, &live).await;
        let (live_media, staging) = (live.storages(), staging_storages(&app));
        copy(&references, &live_media, &staging).await;
        // As if the run had been killed before two of the objects: one never written, one
        // a different object under the key (a stale copy).
        let bob = references
            .iter()
            .find(|r| r.is_private() && !r.key.contains(&references[0].row_id.to_string()))
            .unwrap();
        staging.private.delete(&bob.key).await.unwrap();
        let avatar = references
            .iter()
            .find(|r| r.field == "avatar_key" && !r.key.ends_with("lost.png"))
            .unwrap();
        staging
            .public
            .save(&avatar.key, body(png(7)), &SaveOptions::default())
            .await
            .unwrap();

        let resumed = copy(&references, &live_media, &staging).await;
        assert_eq!(
            resumed.copied, 2,
            "{stack:?}: only what was missing or different"
        );
        assert_eq!(resumed.skipped, 1);
        assert_eq!(read(staging.public.as_ref(), &avatar.key).await, png(1));
        let audit = staging::check_media(&references, &Default::default(), &staging)
            .await
            .unwrap();
        assert_eq!(audit.dangling.len(), 1, "only the object live lost");
        assert!(audit.orphans.is_empty());
    }
}

#[tokio::test]
async fn server_side_copies_keep_metadata() {
    // One server: the staging key can read the live bucket.
    let mut app = spawn_app_with(Stack::PostgresS3, AppOptions::default()).await;
    let live_bucket = format!("live-{}", hex::encode(rand::random::<[u8; 4]>()));
    let s3 = app.s3.as_mut().unwrap();
    s3.create_bucket(&live_bucket).await;
    let (endpoint, access_key, secret_key) = (
        s3.endpoint.clone(),
        s3.access_key.clone(),
        s3.secret_key.clone(),
    );
    let (_, ada) = app.create_member("ada").await;
    let key = format!("resumes/{ada}/r.pdf");
    app.s3
        .as_ref()
        .unwrap()
        .client()
        .put_object()
        .bucket(&live_bucket)
        .key(format!("private/{key}"))
        .body(SdkByteStream::from(sample_pdf("server side")))
        .content_type("application/pdf")
        .content_disposition("attachment; filename=\"cv.pdf\"")
        .send()
        .await
        .unwrap();
    let sha256 = Sha256Digest::of(&sample_pdf("server side")).to_hex();
    app.db()
        .set_resume(ada, &key, "cv.pdf", 1, &sha256)
        .await
        .unwrap();
    let vars: HashMap<String, String> = [
        ("LIVE_AWS_STORAGE_BUCKET_NAME", live_bucket.as_str()),
        ("LIVE_READ_ONLY_ACCESS_KEY_ID", access_key.as_str()),
        ("LIVE_READ_ONLY_SECRET_KEY", secret_key.as_str()),
        ("LIVE_AWS_S3_ENDPOINT_URL", endpoint.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let (public, private) =
        Storages::s3_media(&LiveConfig::from_vars(&vars).unwrap().s3.unwrap(), None);
    let live = MediaStorages { public, private };
    let staging = staging_storages(&app);
    let references = stowage::media::references(app.db()).await.unwrap();
    let options = CopyOptions {
        server_side: true,
        ..CopyOptions::default()
    };
    let report = staging::copy_media(&references, &live, &staging, &options, &())
        .await
        .unwrap();
    assert_eq!((report.copied, report.failed.len()), (1, 0));
    let head = staging.private.head(&key).await.unwrap();
    assert_eq!(head.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(
        head.content_disposition.as_deref(),
        Some("attachment; filename=\"cv.pdf\"")
    );
    assert_eq!(
        read(staging.private.as_ref(), &key).await,
        sample_pdf("server side")
    );
}

pub(crate) fn run(args: &[&str], vars: &[(&str, String)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("SECRET_KEY", "k".repeat(40))
        .env_remove("STOWAGE_ENV");
    for (k, v) in vars {
        command.env(k, v);
    }
    command.output().unwrap()
}

// Multi-threaded: the live server runs on this runtime while the command blocks a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_command_names_failures_writes_a_report_and_exits_non_zero() {
    let live = Live::start().await;
    let app = spawn_app_with(Stack::SqliteFilesystem, AppOptions::default()).await;
    let references = seed(&app, &live).await;
    // A file where one object's directory should be: that copy fails mid-run.
    let ada_avatar = references.iter().find(|r| r.field == "avatar_key").unwrap();
    let blocked = app
        .dir
        .path()
        .join("media")
        .join(ada_avatar.key.rsplit_once('/').unwrap().0);
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, b"not a directory").unwrap();

    let report = app.dir.path().join("failures.jsonl");
    let mut vars = live.vars();
    vars.push(("DATABASE_URL", app.config.database.url.clone()));
    vars.push((
        "MEDIA_ROOT",
        app.dir.path().join("media").display().to_string(),
    ));
    let out = run(&["copy-media", "--report", report.to_str().unwrap()], &vars);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("copied 2, skipped 0, failed 2"), "{stdout}");
    assert!(
        stderr.contains(&format!("profiles row {} avatar_key", ada_avatar.row_id)),
        "{stderr}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .all(|l| l["table"] == "profiles" && l["row_id"].is_i64() && l["error"].is_string())
    );

    // Dry run: lists what is left, copies nothing.
    std::fs::remove_file(&blocked).unwrap();
    let dry = run(&["copy-media", "--dry-run"], &vars);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        stdout.contains(&format!("would copy {}", ada_avatar.key)),
        "{stdout}"
    );
    assert!(stdout.contains("1 to copy"), "{stdout}");
    assert!(!app.storages().public.exists(&ada_avatar.key).await.unwrap());

    // check-media: carol's lost avatar dangles; an object nothing references is an orphan.
    app.storages()
        .private
        .save(
            "resumes/999/orphan.pdf",
            body(sample_pdf("o")),
            &SaveOptions::default(),
        )
        .await
        .unwrap();
    let check = run(&["check-media"], &vars);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success());
    assert!(
        stdout.contains("dangling: profiles row") && stdout.contains("lost.png"),
        "{stdout}"
    );
    assert!(
        stdout.contains("orphan: private resumes/999/orphan.pdf"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_media_verify_finds_an_object_changed_behind_the_app() {
    for stack in STACKS {
        let app = spawn_app_with(stack, AppOptions::default()).await;
        let (_, ada) = app.create_member("ada").await;
        let pdf = sample_pdf("verified");
        let key = app.give_resume(ada, "cv.pdf", pdf.clone()).await;
        let vars: Vec<(&str, String)> = app
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let check = run(&["check-media", "--verify"], &vars);
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success(), "{stack:?}: {stdout}{check:?}");
        assert!(
            stdout.contains("1 objects verified: 1 intact, 0 differ"),
            "{stack:?}: {stdout}"
        );

        // The object changes in storage, behind the app's back: same name, other bytes.
        let mut changed = pdf.clone();
        changed[12] ^= 1;
        app.storages()
            .private
            .save(&key, body(changed.clone()), &SaveOptions::default())
            .await
            .unwrap();
        let check = run(&["check-media", "--verify"], &vars);
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert!(!check.status.success(), "{stack:?}: {stdout}");
        let expected = format!(
            "differs: profiles row {ada} resume_key -> {key} (sha256 recorded {}, stored {})",
            Sha256Digest::of(&pdf),
            Sha256Digest::of(&changed)
        );
        assert!(stdout.contains(&expected), "{stack:?}: {stdout}");
        // Without --verify, nothing is read, and nothing dangles.
        assert!(run(&["check-media"], &vars).status.success(), "{stack:?}");
    }
}

#[tokio::test]
async fn make_staging_has_guards_and_keeps_only_staff_and_named_users() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("live-copy.db").display());
    let db = Database::connect(&url, 1).await.unwrap();
    db.migrate().await.unwrap();
    for (name, staff) in [
        ("admin", true),
        ("bob", false),
        ("carol", false),
        ("dave", false),
    ] {
        db.create_user(name, "hash", staff, name).await.unwrap();
    }
    sqlx::query("INSERT INTO sessions (id, data, expires_at) VALUES ('s1', x'00', 9999999999)")
        .execute(db.pool())
        .await
        .unwrap();
    // The admin's resume was shared and downloaded on live: who and by which link stays there.
    let admin = db.find_user_by_username("admin").await.unwrap().unwrap();
    let link = db
        .create_share_link(
            admin.id,
            &"ab".repeat(32),
            "Acme recruiting",
            9_999_999_999,
            None,
        )
        .await
        .unwrap();
    let profile = db.find_profile_of_user(admin.id).await.unwrap().unwrap();
    db.insert_downloads(&[stowage::db::downloads::Download {
        profile_id: profile.id,
        member_id: None,
        share_link_id: Some(link),
        who: "Acme recruiting".into(),
        request_id: "r1".into(),
        at: 1,
    }])
    .await
    .unwrap();
    db.close().await;
    let vars = vec![("DATABASE_URL", url.clone())];

    let no = run(&["make-staging"], &vars);
    assert!(!no.status.success());
    assert!(String::from_utf8_lossy(&no.stderr).contains("--yes"));
    let prod = run(
        &["make-staging", "--yes"],
        &[
            ("DATABASE_URL", url.clone()),
            ("STOWAGE_ENV", "production".into()),
        ],
    );
    assert!(String::from_utf8_lossy(&prod.stderr).contains("STOWAGE_ENV=production"));
    // The same database under another spelling of its URL is still live.
    let respelled = format!("sqlite://{}/./live-copy.db?mode=rw", dir.path().display());
    for live in [url.clone(), respelled] {
        let same = run(
            &["make-staging", "--yes"],
            &[("DATABASE_URL", url.clone()), ("LIVE_DATABASE_URL", live)],
        );
        let stderr = String::from_utf8_lossy(&same.stderr);
        assert!(stderr.contains("reach the same database"), "{stderr}");
    }
    // A database nobody marked as a staging copy is not scrubbed.
    let unmarked = run(&["make-staging", "--yes"], &vars);
    let stderr = String::from_utf8_lossy(&unmarked.stderr);
    assert!(
        !unmarked.status.success() && stderr.contains("mark-staging"),
        "{stderr}"
    );
    let misnamed = run(&["mark-staging", "--database", "live.db"], &vars);
    assert!(!misnamed.status.success());
    assert!(String::from_utf8_lossy(&misnamed.stderr).contains("live-copy.db"));
    let marked = run(&["mark-staging", "--database", "live-copy.db"], &vars);
    assert!(marked.status.success(), "{marked:?}");
    let typo = run(&["make-staging", "--yes", "--keep-users", "bobby"], &vars);
    assert!(String::from_utf8_lossy(&typo.stderr).contains("bobby"));

    let db = Database::connect(&url, 1).await.unwrap();
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_as::<_, (i64,)>(sql)
                .fetch_one(db.pool())
                .await
                .unwrap()
                .0
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM users").await,
        4,
        "the refusals changed nothing"
    );

    let out = run(&["make-staging", "--yes", "--keep-users", "Bob"], &vars);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("removed 2 users, 2 profiles, 1 sessions"),
        "{stdout}"
    );
    assert!(stdout.contains("kept 2 users: admin, bob"), "{stdout}");
    let names: Vec<(String,)> = sqlx::query_as("SELECT username FROM users ORDER BY username")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(names, [("admin".to_owned(),), ("bob".to_owned(),)]);
    assert_eq!(count("SELECT count(*) FROM profiles").await, 2);
    assert_eq!(count("SELECT count(*) FROM sessions").await, 0);
    assert_eq!(count("SELECT count(*) FROM share_links").await, 0);
    assert_eq!(count("SELECT count(*) FROM downloads").await, 0);
}
