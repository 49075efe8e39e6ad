//! Real-browser flows: headless Chromium, driven over WebDriver (chromedriver + fantoccini),
//! against the release binary on PostgreSQL and the S3-compatible server. Each flow runs in a
//! browser of its own (fresh profile and download directory) and ends with a screenshot in
//! `target/test-artifacts/browser/` (or `$STOWAGE_ARTIFACTS`).
//!
//! `scripts/test-services` installs Debian's `chromium` and `chromium-driver` when absent; a
//! missing browser fails these tests, it never skips them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use image::ImageFormat;
use serde_json::json;

use crate::garage::TestS3;
use crate::helpers::sample_pdf;
use crate::process::{Served, client, free_port, postgres_s3_vars, serve, sign_up_as};

/// chromedriver on a free port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test-services installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, url }
    }

    /// A fresh headless Chromium whose downloads land in `downloads`.
    async fn browser(&self, profile: &Path, downloads: &Path) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium(),
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1200,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                    "plugins.always_open_pdf_externally": true,
                    "safebrowsing.enabled": false,
                },
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> String {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/usr/bin/chromium")
        .to_owned()
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("STOWAGE_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/browser")
        });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A screenshot with the element matching `css` scrolled into view.
async fn screenshot_at(browser: &Client, name: &str, css: &str) {
    if let Ok(element) = browser.find(Locator::Css(css)).await {
        let _ = browser
            .execute(
                "arguments[0].scrollIntoView({block: 'center'});",
                vec![serde_json::to_value(&element).unwrap()],
            )
            .await;
    }
    screenshot(browser, name).await;
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

/// The site and the parts it runs on.
struct Site {
    served: Served,
    s3: TestS3,
    dir: Arc<tempfile::TempDir>,
}

impl Site {
    fn url(&self, path: &str) -> String {
        self.served.url(path)
    }
}

async fn site() -> Site {
    site_with(&[]).await
}

/// The site, with `extra` variables.
async fn site_with(extra: &[(&str, &str)]) -> Site {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (s3, _, mut vars) = postgres_s3_vars(&dir, "browser").await;
    vars.push(("AVATAR_MAX_BYTES".into(), "100000".into()));
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let served = serve(vars, dir.clone()).await;
    // The README's CORS rule, for this site's origin.
    s3.allow_direct_uploads_from(served.url("").trim_end_matches('/'))
        .await;
    Site { served, s3, dir }
}

/// Fills the named fields of the form `form` (a CSS selector) and presses its submit button.
async fn fill_and_submit(browser: &Client, form: &str, fields: &[(&str, &str)]) {
    for (name, value) in fields {
        let input = browser
            .find(Locator::Css(&format!("{form} [name=\"{name}\"]")))
            .await
            .unwrap_or_else(|e| panic!("no field {name} in {form}: {e}"));
        input.clear().await.ok();
        input.send_keys(value).await.unwrap();
    }
    browser
        .find(Locator::Css(&format!("{form} button[type=submit]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Signs `browser` in as `username` through the sign-in page.
async fn sign_in(browser: &Client, site: &Site, username: &str, password: &str) {
    browser.goto(&site.url("/login")).await.unwrap();
    fill_and_submit(
        browser,
        "form[action=\"/login\"]",
        &[("username", username), ("password", password)],
    )
    .await;
    assert!(text_of(browser, ".who").await.contains(username));
}

/// Chooses the file at `path` in the edit page's `field` input and submits that form.
async fn upload(browser: &Client, field: &str, path: &str) {
    browser
        .find(Locator::Css(&format!("input[name={field}]")))
        .await
        .unwrap()
        .send_keys(path)
        .await
        .unwrap();
    browser
        .find(Locator::Css(&format!(
            "form[action=\"/profile/{field}\"] button[type=submit]"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits for an element matching `css` and returns its text.
async fn text_of(browser: &Client, css: &str) -> String {
    let element = browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"));
    element.text().await.unwrap()
}

/// Loads `url` until it shows an element matching `css` (at most 15 s) and returns its text:
/// for what the server writes a moment after answering, such as the batched download log.
async fn text_once_written(browser: &Client, url: &str, css: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        browser.goto(url).await.unwrap();
        if let Ok(element) = browser.find(Locator::Css(css)).await {
            return element.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "{url} never showed {css}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `predicate` holds for the page's path, at most 15 s.
async fn wait_for_path(browser: &Client, predicate: impl Fn(&str) -> bool) -> url::Url {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = browser.current_url().await.unwrap();
        if predicate(url.path()) {
            return url;
        }
        assert!(Instant::now() < deadline, "still on {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for `name` to be complete in `dir` and returns its bytes.
async fn downloaded(dir: &Path, name: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listing: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let pending = listing.iter().any(|n| n.ends_with(".crdownload"));
        if !pending && listing.iter().any(|n| n == name) {
            return std::fs::read(dir.join(name)).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no download named {name:?} in {listing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

fn png(width: u32, height: u32, noisy: bool) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        if noisy {
            image::Rgb(rand::random::<[u8; 3]>())
        } else {
            image::Rgb([(x * 3) as u8, (y * 5) as u8, 160])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

const ADA_PASSWORD: &str = "analytical engine 1843";
const GRACE_PASSWORD: &str = "compiler a-0 1952";
const RESUME_NAME: &str = "Ada Lovelace – CV.pdf";

#[tokio::test]
async fn members_and_visitors_in_a_real_browser() {
    let site = site().await;
    let driver = Driver::start().await;
    let files = tempfile::tempdir().unwrap();
    let resume = sample_pdf("browser flow");
    let resume_path = write_file(files.path(), RESUME_NAME, &resume);
    let avatar_path = write_file(files.path(), "ada.png", &png(64, 64, false));
    let browser_dir = |name: &str| {
        let profile = site.dir.path().join(format!("chromium-{name}"));
        let downloads = site.dir.path().join(format!("downloads-{name}"));
        std::fs::create_dir_all(&downloads).unwrap();
        (profile, downloads)
    };

    // --- A new member signs up, uploads an avatar and a resume, signs out.
    let (profile, downloads) = browser_dir("new-member");
    let ada = driver.browser(&profile, &downloads).await;
    ada.goto(&site.url("/signup")).await.unwrap();
    fill_and_submit(
        &ada,
        "form[action=\"/signup\"]",
        &[
            ("username", "ada"),
            ("display_name", "Ada Lovelace"),
            ("password", ADA_PASSWORD),
            ("password2", ADA_PASSWORD),
        ],
    )
    .await;
    assert!(text_of(&ada, ".who").await.contains("ada"), "signed in");
    ada.goto(&site.url("/profile/edit")).await.unwrap();
    upload(&ada, "avatar", &avatar_path).await;
    assert!(text_of(&ada, ".notice").await.contains("avatar"));

    ada.goto(&site.url("/")).await.unwrap();
    let img = ada
        .find(Locator::Css("img[alt=\"Ada Lovelace's avatar\"]"))
        .await
        .expect("the avatar on the directory");
    let src = img.attr("src").await.unwrap().unwrap();
    assert!(
        src.starts_with(&site.s3.public_base),
        "served from the bucket's website: {src}"
    );
    let loaded = ada
        .execute(
            "return arguments[0].complete && arguments[0].naturalWidth;",
            vec![serde_json::to_value(&img).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(loaded, json!(64), "the browser loaded the avatar");

    // The resume goes straight to the bucket (presigned POST), then is confirmed.
    ada.goto(&site.url("/profile/edit")).await.unwrap();
    upload(&ada, "resume", &resume_path).await;
    assert!(text_of(&ada, ".notice").await.contains("resume"));
    assert!(text_of(&ada, ".resume-state").await.contains(RESUME_NAME));
    let posted_to_bucket = site
        .s3
        .requests()
        .iter()
        .any(|r| r.method == "POST" && r.path == format!("/{}", site.s3.private_bucket));
    assert!(
        posted_to_bucket,
        "the browser posted the file to the bucket"
    );
    let profile_url = ada
        .find(Locator::LinkText("See your public profile"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    screenshot(&ada, "1-new-member-uploaded").await;
    ada.find(Locator::Css("form[action=\"/logout\"] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_of(&ada, "a[href=\"/login\"]").await;
    screenshot(&ada, "1-new-member-signed-out").await;
    ada.close().await.unwrap();

    // --- Another member signs in and grabs the resume.
    let (client, jar) = client();
    sign_up_as(&client, &jar, &site.served, "grace", GRACE_PASSWORD).await;
    let (profile, downloads) = browser_dir("other-member");
    let grace = driver.browser(&profile, &downloads).await;
    sign_in(&grace, &site, "grace", GRACE_PASSWORD).await;
    grace.goto(&site.url(&profile_url)).await.unwrap();
    let link = grace
        .find(Locator::LinkText("Grab my resume"))
        .await
        .expect("members see the resume link");
    let before = site.s3.requests().len();
    link.click().await.unwrap();
    let bytes = downloaded(&downloads, RESUME_NAME).await;
    assert_eq!(bytes, resume, "the downloaded bytes are the uploaded PDF");
    let fetched: Vec<_> = site.s3.requests()[before..]
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/resumes/"))
        .cloned()
        .collect();
    assert!(
        fetched
            .iter()
            .any(|r| r.presigned && r.user_agent.contains("Chrome")),
        "the browser followed the presigned URL to the bucket: {fetched:?}"
    );
    screenshot(&grace, "2-other-member-downloaded").await;
    grace.close().await.unwrap();

    // --- A visitor: no link; the resume URL asks to sign in, and signing in lands on it.
    let (profile, downloads) = browser_dir("visitor");
    let visitor = driver.browser(&profile, &downloads).await;
    visitor.goto(&site.url(&profile_url)).await.unwrap();
    text_of(&visitor, "h1").await;
    assert!(
        visitor
            .find_all(Locator::LinkText("Grab my resume"))
            .await
            .unwrap()
            .is_empty(),
        "visitors see no resume link"
    );
    let id = profile_url.rsplit('/').next().unwrap();
    visitor
        .goto(&site.url(&format!("/resume/{id}")))
        .await
        .unwrap();
    assert_eq!(text_of(&visitor, "h1").await, "Members only");
    screenshot(&visitor, "3-visitor-members-only").await;
    let login = visitor
        .find(Locator::Css("a[href^=\"/login?next=\"]"))
        .await
        .expect("a login link");
    login.click().await.unwrap();
    wait_for_path(&visitor, |p| p == "/login").await;
    let before_visitor = site.s3.requests().len();
    fill_and_submit(
        &visitor,
        "form[action=\"/login\"]",
        &[("username", "grace"), ("password", GRACE_PASSWORD)],
    )
    .await;
    // Signing in redirects to /resume/{id}, and on to the bucket: the download.
    let bytes = downloaded(&downloads, RESUME_NAME).await;
    assert_eq!(bytes, resume, "signing in led back to the resume");
    let followed = site.s3.requests()[before_visitor..].iter().any(|r| {
        r.method == "GET"
            && r.path.contains("/resumes/")
            && r.presigned
            && r.user_agent.contains("Chrome")
    });
    assert!(followed, "through the presigned URL");
    screenshot(&visitor, "3-visitor-signed-in").await;
    visitor.close().await.unwrap();

    // --- Errors are shown on the page.
    let (profile, downloads) = browser_dir("errors");
    let errors = driver.browser(&profile, &downloads).await;
    errors.goto(&site.url("/login")).await.unwrap();
    fill_and_submit(
        &errors,
        "form[action=\"/login\"]",
        &[("username", "ada"), ("password", ADA_PASSWORD)],
    )
    .await;
    text_of(&errors, ".who").await;
    errors.goto(&site.url("/profile/edit")).await.unwrap();
    let big = write_file(files.path(), "huge.png", &png(400, 400, true));
    upload(&errors, "avatar", &big).await;
    let message = text_of(&errors, ".error").await;
    assert!(message.contains("larger than the limit"), "{message}");
    screenshot_at(&errors, "4-errors-oversized-avatar", ".error").await;

    errors.goto(&site.url("/profile/edit")).await.unwrap();
    let fake = write_file(files.path(), "notes.pdf", b"just some notes, not a PDF\n");
    upload(&errors, "resume", &fake).await;
    let message = text_of(&errors, ".upload-status.error, p.error").await;
    assert!(message.contains("must be PDF"), "{message}");
    screenshot_at(
        &errors,
        "4-errors-not-a-pdf",
        ".upload-status.error, p.error",
    )
    .await;
    // The refused file did not replace the resume.
    errors.goto(&site.url("/profile/edit")).await.unwrap();
    assert!(
        text_of(&errors, ".resume-state")
            .await
            .contains(RESUME_NAME)
    );
    errors.close().await.unwrap();
}

#[tokio::test]
async fn a_resume_goes_straight_to_the_bucket_by_presigned_put_in_a_real_browser() {
    // For stores without browser POST (Cloudflare R2): the script follows the issued method.
    let site = site_with(&[("DIRECT_UPLOAD_METHOD", "put")]).await;
    let driver = Driver::start().await;
    let files = tempfile::tempdir().unwrap();
    let resume = sample_pdf("browser put");
    let resume_path = write_file(files.path(), RESUME_NAME, &resume);
    let (client, jar) = client();
    sign_up_as(&client, &jar, &site.served, "ada", ADA_PASSWORD).await;
    let profile = site.dir.path().join("chromium-put");
    let downloads = site.dir.path().join("downloads-put");
    std::fs::create_dir_all(&downloads).unwrap();
    let ada = driver.browser(&profile, &downloads).await;
    sign_in(&ada, &site, "ada", ADA_PASSWORD).await;
    ada.goto(&site.url("/profile/edit")).await.unwrap();
    upload(&ada, "resume", &resume_path).await;
    assert!(text_of(&ada, ".notice").await.contains("resume"));
    assert!(text_of(&ada, ".resume-state").await.contains(RESUME_NAME));
    let requests = site.s3.requests();
    let private = format!("/{}/", site.s3.private_bucket);
    assert!(
        requests
            .iter()
            .any(|r| r.method == "PUT" && r.path.starts_with(&private) && r.presigned),
        "the browser sent the file to the bucket with a presigned PUT: {requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.method == "POST"),
        "and posted nothing: {requests:?}"
    );
    screenshot(&ada, "3-resume-by-put").await;
    ada.close().await.unwrap();
}

#[tokio::test]
async fn a_share_link_opens_for_a_stranger_until_revoked_in_a_real_browser() {
    let site = site().await;
    let driver = Driver::start().await;
    let files = tempfile::tempdir().unwrap();
    let resume = sample_pdf("shared with a recruiter");
    let resume_path = write_file(files.path(), RESUME_NAME, &resume);
    let browser_dir = |name: &str| {
        let profile = site.dir.path().join(format!("chromium-{name}"));
        let downloads = site.dir.path().join(format!("downloads-{name}"));
        std::fs::create_dir_all(&downloads).unwrap();
        (profile, downloads)
    };
    let (client, jar) = client();
    sign_up_as(&client, &jar, &site.served, "ada", ADA_PASSWORD).await;

    // --- The member uploads a resume and makes a link for a recruiter.
    let (profile, downloads) = browser_dir("member");
    let ada = driver.browser(&profile, &downloads).await;
    sign_in(&ada, &site, "ada", ADA_PASSWORD).await;
    ada.goto(&site.url("/profile/edit")).await.unwrap();
    upload(&ada, "resume", &resume_path).await;
    assert!(text_of(&ada, ".resume-state").await.contains(RESUME_NAME));
    fill_and_submit(
        &ada,
        "form[action=\"/profile/share-links\"]",
        &[("label", "Acme recruiting"), ("days", "7")],
    )
    .await;
    let shown = ada
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(".new-link input"))
        .await
        .expect("the new link, shown once");
    let link = shown.prop("value").await.unwrap().unwrap();
    assert!(link.contains("/s/"), "{link}");
    screenshot_at(&ada, "5-share-link-created", ".new-link").await;

    // --- A stranger's browser, with no session, opens it and gets the PDF.
    let (profile, downloads) = browser_dir("stranger");
    let stranger = driver.browser(&profile, &downloads).await;
    stranger.goto(&link).await.unwrap();
    let bytes = downloaded(&downloads, RESUME_NAME).await;
    assert_eq!(bytes, resume, "the shared resume, under its name");

    // --- The member sees the download in their log, then revokes the link.
    let log = text_once_written(&ada, &site.url("/profile/edit"), "#downloads table").await;
    assert!(log.contains("share link “Acme recruiting”"), "{log}");
    let row = text_of(&ada, "table.share-links tbody tr").await;
    assert!(
        row.contains("Acme recruiting") && row.contains("active"),
        "{row}"
    );
    screenshot_at(&ada, "5-share-link-downloaded", "#downloads").await;
    ada.find(Locator::Css(
        "table.share-links form[action$=\"/revoke\"] button",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    // The form posts from /profile/edit back to it: the path cannot tell the pages apart, and
    // the old page's row goes stale under a reader, so read until the new page says it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let row = match ada.find(Locator::Css("table.share-links tbody tr")).await {
            Ok(row) => row.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if row.contains("revoked") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the link never showed revoked: {row}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // --- The stranger tries again: the page says the link is gone, and nothing downloads.
    stranger.goto(&link).await.unwrap();
    assert_eq!(text_of(&stranger, "h1").await, "This link no longer works");
    screenshot(&stranger, "5-share-link-revoked").await;
    let listing: Vec<_> = std::fs::read_dir(&downloads).unwrap().flatten().collect();
    assert_eq!(listing.len(), 1, "only the first download");
    stranger.close().await.unwrap();
    ada.close().await.unwrap();
}
