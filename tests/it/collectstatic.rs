//! `collectstatic`: hashed names, the manifest, the stylesheet rewrite, incremental runs and
//! failures, against the filesystem and the S3-compatible server; and pages linking through
//! the manifest.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::StatusCode;
use stowage::jobs::collect_static::{self as collect, Options, Report};
use stowage::statics::{IMMUTABLE, MANIFEST, Manifest, NO_CACHE};
use stowage::storage::{
    ByteStream, ObjectInfo, ObjectMeta, SaveOptions, SignedUrlOptions, Storage, StorageError,
    StoredObject,
};

use crate::helpers::{AppOptions, STACKS, Stack, spawn_app_with};

/// The static storage of an app, counting its uploads and failing those whose key starts with
/// `fail_prefix`.
#[derive(Debug)]
struct Watched {
    inner: Arc<dyn Storage>,
    saves: AtomicUsize,
    fail_prefix: Option<&'static str>,
}

impl Watched {
    fn new(inner: Arc<dyn Storage>, fail_prefix: Option<&'static str>) -> Self {
        Self {
            inner,
            saves: AtomicUsize::new(0),
            fail_prefix,
        }
    }
}

#[async_trait]
impl Storage for Watched {
    async fn save(
        &self,
        key: &str,
        body: ByteStream<'_>,
        options: &SaveOptions,
    ) -> stowage::storage::Result<stowage::storage::Stored> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        if self.fail_prefix.is_some_and(|p| key.starts_with(p)) {
            return Err(StorageError::Unavailable("injected failure".into()));
        }
        self.inner.save(key, body, options).await
    }
    async fn open(&self, key: &str) -> stowage::storage::Result<StoredObject> {
        self.inner.open(key).await
    }
    async fn delete(&self, key: &str) -> stowage::storage::Result<()> {
        self.inner.delete(key).await
    }
    async fn exists(&self, key: &str) -> stowage::storage::Result<bool> {
        self.inner.exists(key).await
    }
    async fn size(&self, key: &str) -> stowage::storage::Result<u64> {
        self.inner.size(key).await
    }
    async fn head(&self, key: &str) -> stowage::storage::Result<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn read_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> stowage::storage::Result<Bytes> {
        self.inner.read_range(key, range).await
    }
    async fn list(&self, prefix: &str) -> stowage::storage::Result<Vec<ObjectInfo>> {
        self.inner.list(prefix).await
    }
    fn url(&self, key: &str) -> stowage::storage::Result<String> {
        self.inner.url(key)
    }
    fn signed_url(
        &self,
        key: &str,
        options: &SignedUrlOptions,
    ) -> stowage::storage::Result<String> {
        self.inner.signed_url(key, options)
    }
    fn base_url(&self) -> String {
        self.inner.base_url()
    }
}

const SITE_CSS: &str = "body{background:url(../img/bg.png) no-repeat}\n\
                        .logo{background:url('../img/logo.svg')}\n";

/// A small static tree: a stylesheet referencing two images, a script and a font.
fn write_tree(root: &Path) {
    for dir in ["css", "img", "js", "fonts"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("css/site.css"), SITE_CSS).unwrap();
    std::fs::write(root.join("img/bg.png"), b"\x89PNG\r\n\x1a\n first").unwrap();
    std::fs::write(
        root.join("img/logo.svg"),
        "<svg xmlns='http://www.w3.org/2000/svg'/>",
    )
    .unwrap();
    std::fs::write(root.join("js/app.js"), "console.log('hi');\n").unwrap();
    std::fs::write(root.join("fonts/a.woff2"), b"wOF2 font").unwrap();
}

async fn run(storage: &dyn Storage, source: &Path) -> Report {
    let options = Options {
        jobs: 16,
        dry_run: false,
    };
    collect::collect(source, storage, &options, &())
        .await
        .unwrap()
}

async fn read(storage: &dyn Storage, key: &str) -> Vec<u8> {
    use futures_util::TryStreamExt;
    let object = storage.open(key).await.unwrap();
    let chunks: Vec<Bytes> = object.body.try_collect().await.unwrap();
    chunks.concat()
}

fn static_app_options(stack: Stack) -> AppOptions {
    let vars = match stack {
        Stack::SqliteFilesystem => vec![],
        Stack::PostgresS3 => vec![("STATICFILES_STORAGE", "s3".to_owned())],
    };
    AppOptions { vars }
}

#[tokio::test]
async fn assets_are_stored_once_under_hashed_names_beside_a_manifest() {
    for stack in STACKS {
        let app = spawn_app_with(stack, static_app_options(stack)).await;
        let source = app.dir.path().join("source");
        write_tree(&source);
        let storage = Watched::new(app.storages().static_files.clone(), None);

        let cold = run(&storage, &source).await;
        assert_eq!(cold.uploaded.len(), 5, "{stack:?}");
        assert!(cold.manifest_written && cold.failed.is_empty());
        assert_eq!(
            storage.saves.load(Ordering::SeqCst),
            6,
            "5 files and the manifest"
        );

        let manifest = Manifest::load(&storage).await.unwrap().unwrap();
        let names: Vec<&str> = manifest.paths.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "css/site.css",
                "fonts/a.woff2",
                "img/bg.png",
                "img/logo.svg",
                "js/app.js"
            ]
        );
        for (name, hashed) in &manifest.paths {
            let (stem, ext) = name.rsplit_once('.').unwrap();
            let hash = hashed
                .strip_prefix(&format!("{stem}."))
                .and_then(|rest| rest.strip_suffix(&format!(".{ext}")))
                .unwrap_or_else(|| panic!("{hashed} is not a hashed {name}"));
            assert!(hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()));
            assert!(storage.exists(hashed).await.unwrap(), "{hashed}");
        }
        let css = String::from_utf8(read(&storage, &manifest.paths["css/site.css"]).await).unwrap();
        let bg = manifest.paths["img/bg.png"].trim_start_matches("img/");
        let logo = manifest.paths["img/logo.svg"].trim_start_matches("img/");
        assert!(css.contains(&format!("url(../img/{bg})")), "{css}");
        assert!(css.contains(&format!("url('../img/{logo}')")), "{css}");
        assert!(
            !storage.exists("img/bg.png").await.unwrap(),
            "no plain names"
        );

        if let Some(bucket) = &app.bucket {
            for (name, hashed) in &manifest.paths {
                let head = app
                    .head_in_bucket(bucket, &format!("assets/{hashed}"))
                    .await;
                assert_eq!(head.cache_control(), Some(IMMUTABLE), "{name}");
                let expected = collect::content_type(name);
                assert_eq!(head.content_type(), Some(expected.as_str()), "{name}");
            }
            let head = app
                .head_in_bucket(bucket, &format!("assets/{MANIFEST}"))
                .await;
            assert_eq!(head.cache_control(), Some(NO_CACHE));
            assert_eq!(head.content_type(), Some("application/json"));
        }

        // Nothing changed: nothing uploaded, the same names.
        let again = run(&storage, &source).await;
        assert!(
            again.uploaded.is_empty() && !again.manifest_written,
            "{stack:?}"
        );
        assert_eq!(again.unchanged, 5);
        assert_eq!(storage.saves.load(Ordering::SeqCst), 6, "no upload at all");
        assert_eq!(Manifest::load(&storage).await.unwrap().unwrap(), manifest);

        // One image changed: it, the stylesheet that references it, and the manifest.
        std::fs::write(source.join("img/bg.png"), b"\x89PNG\r\n\x1a\n second").unwrap();
        let changed = run(&storage, &source).await;
        assert_eq!(
            changed.uploaded,
            ["css/site.css", "img/bg.png"],
            "{stack:?}"
        );
        assert!(changed.manifest_written);
        assert_eq!(storage.saves.load(Ordering::SeqCst), 9);
        let updated = Manifest::load(&storage).await.unwrap().unwrap();
        assert_ne!(updated.paths["img/bg.png"], manifest.paths["img/bg.png"]);
        assert_eq!(updated.paths["js/app.js"], manifest.paths["js/app.js"]);
        for old in [
            &manifest.paths["img/bg.png"],
            &manifest.paths["css/site.css"],
        ] {
            assert!(
                storage.exists(old).await.unwrap(),
                "{old} stays for loaded pages"
            );
        }
    }
}

#[tokio::test]
async fn a_failed_upload_is_named_and_leaves_the_old_manifest() {
    for stack in STACKS {
        let app = spawn_app_with(stack, static_app_options(stack)).await;
        let source = app.dir.path().join("source");
        write_tree(&source);
        run(app.storages().static_files.as_ref(), &source).await;
        let before = Manifest::load(app.storages().static_files.as_ref())
            .await
            .unwrap()
            .unwrap();

        std::fs::write(source.join("js/app.js"), "console.log('changed');\n").unwrap();
        std::fs::write(source.join("fonts/a.woff2"), b"wOF2 changed").unwrap();
        let failing = Watched::new(app.storages().static_files.clone(), Some("js/"));
        let report = run(&failing, &source).await;
        assert_eq!(report.failed.len(), 1, "{stack:?}");
        assert_eq!(report.failed[0].0, "js/app.js");
        assert_eq!(report.uploaded, ["fonts/a.woff2"], "the others carry on");
        assert!(!report.manifest_written);
        let after = Manifest::load(&failing).await.unwrap().unwrap();
        assert_eq!(after, before, "{stack:?}: the old manifest stays");
    }
}

#[tokio::test]
async fn the_command_uploads_reports_and_exits_non_zero_on_failure() {
    const BIN: &str = env!("CARGO_BIN_EXE_stowage");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    write_tree(&source);
    let command = |args: &[&str], static_root: &Path| {
        std::process::Command::new(BIN)
            .arg("collectstatic")
            .args(args)
            .arg("--source")
            .arg(&source)
            .env("SECRET_KEY", "k".repeat(40))
            .env("STATIC_ROOT", static_root)
            .output()
            .unwrap()
    };
    let root = dir.path().join("collected");

    let dry = command(&["--dry-run"], &root);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{dry:?}");
    assert!(stdout.contains("would upload css/site.css"), "{stdout}");
    assert!(stdout.contains("5 to upload"), "{stdout}");
    assert!(!root.exists(), "a dry run writes nothing");

    let cold = command(&[], &root);
    let stdout = String::from_utf8_lossy(&cold.stdout);
    assert!(cold.status.success(), "{cold:?}");
    assert!(stdout.contains("5 uploaded"), "{stdout}");
    assert!(root.join("assets").join(MANIFEST).is_file());

    let again = command(&[], &root);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("Nothing to upload: all 5 files are unchanged"),
        "{stdout}"
    );

    // A file where js/ should be: that upload fails and is named, and the exit is non-zero.
    let blocked = root.join("assets/js");
    std::fs::remove_dir_all(&blocked).unwrap();
    std::fs::write(&blocked, b"a file where the directory should be").unwrap();
    let failed = command(&[], &root);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{failed:?}");
    assert!(stderr.contains("js/app.js"), "{stderr}");
}

#[tokio::test]
async fn pages_link_assets_through_the_manifest() {
    // Collected onto the filesystem: served by the app, hashed names cached for a year.
    let first = spawn_app_with(Stack::SqliteFilesystem, AppOptions::default()).await;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    let static_root = first.dir.path().join("static");
    run(first.storages().static_files.as_ref(), &source).await;
    let vars = vec![("STATIC_ROOT", static_root.display().to_string())];
    let app = spawn_app_with(Stack::SqliteFilesystem, AppOptions { vars }).await;
    let manifest = Manifest::load(app.storages().static_files.as_ref())
        .await
        .unwrap()
        .unwrap();
    let css = &manifest.paths["css/site.css"];
    let page = app.get_html("/").await;
    assert!(page.contains(&format!("href=\"/static/{css}\"")), "{page}");
    assert!(page.contains(&format!("/static/{}", manifest.paths["img/favicon.svg"])));

    let hashed = app
        .client
        .get(app.url(&format!("/static/{css}")))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(hashed.status(), StatusCode::OK);
    assert_eq!(hashed.headers()["cache-control"], IMMUTABLE);
    assert_eq!(hashed.headers()["content-encoding"], "gzip");
    assert!(
        hashed.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(hashed.headers().contains_key("etag"));

    // Plain names are still served from static/, revalidated every time.
    let plain = app.get("/static/css/site.css").await;
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(plain.headers()["cache-control"], NO_CACHE);
    let etag = plain.headers()["etag"].clone();
    let revalidated = app
        .client
        .get(app.url("/static/css/site.css"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    let brotli = app
        .client
        .get(app.url("/static/css/site.css"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(brotli.headers()["content-encoding"], "br");

    // Without a manifest, pages link static/ as it is.
    let page = first.get_html("/").await;
    assert!(page.contains("href=\"/static/css/site.css\""), "{page}");
}

#[tokio::test]
async fn on_s3_pages_link_the_bucket() {
    let setup = spawn_app_with(Stack::PostgresS3, static_app_options(Stack::PostgresS3)).await;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    run(setup.storages().static_files.as_ref(), &source).await;
    // A process started after collectstatic reads the manifest from the bucket.
    let services = stowage::services::Services::build(&setup.config)
        .await
        .unwrap();
    let state = stowage::web::AppState::build(setup.config.clone(), services).await;
    let css = state.statics.url("css/site.css");
    let public_base = &setup.s3.as_ref().unwrap().public_base;
    assert!(
        css.starts_with(&format!("{public_base}/assets/css/site.")),
        "{css}"
    );
    let fetched = setup.anonymous_client().get(&css).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK, "public, like media");
    assert_eq!(fetched.headers()["cache-control"], IMMUTABLE);
}
