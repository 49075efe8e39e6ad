//! The test harness: [`spawn_app`] starts stowage on `127.0.0.1:0` with its own database
//! (a fresh SQLite file, or a fresh PostgreSQL database), its own media directory or S3 bucket,
//! and hands back a cookie-keeping client that does not follow redirects.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::cookie::{CookieStore, Jar};
use std::time::{Duration, Instant};
use stowage::auth::hash_password;
use stowage::config::Config;
use stowage::db::Database;
use stowage::services::Services;
use stowage::storage::{ByteStream, SaveOptions, Storages};
use stowage::web::{self, AppState};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::garage::TestS3;

/// Which real services a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    SqliteFilesystem,
    PostgresS3,
}

pub const STACKS: [Stack; 2] = [Stack::SqliteFilesystem, Stack::PostgresS3];

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub stack: Stack,
    pub config: Config,
    pub address: String,
    pub state: AppState,
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
    pub dir: TempDir,
    pub s3: Option<TestS3>,
    pub bucket: Option<String>,
    /// The variables the app was configured from, for running a command against it.
    pub env: HashMap<String, String>,
}

/// Options beyond the stack.
#[derive(Debug, Default, Clone)]
pub struct AppOptions {
    /// Variables set over the stack's; an empty value unsets one.
    pub vars: Vec<(&'static str, String)>,
}

fn admin_postgres_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database. PostgreSQL must be running: `scripts/test-services` starts it;
/// a missing server fails the test, it never skips.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin = admin_postgres_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL is required at {admin} (run scripts/test-services): {e}")
        });
    let name = format!("stowage_test_{}", hex::encode(rand::random::<[u8; 8]>()));
    sqlx::Executor::execute(&mut conn, format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("creating a test database");
    let mut url = url::Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

pub async fn spawn_app(stack: Stack) -> TestApp {
    spawn_app_with(stack, AppOptions::default()).await
}

pub async fn spawn_app_with(stack: Stack, options: AppOptions) -> TestApp {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("SECRET_KEY".into(), hex::encode(rand::random::<[u8; 32]>()));
    vars.insert(
        "MEDIA_ROOT".into(),
        dir.path().join("media").display().to_string(),
    );
    vars.insert(
        "STATIC_ROOT".into(),
        dir.path().join("static").display().to_string(),
    );
    let (mut s3, mut bucket) = (None, None);
    let database_url = match stack {
        Stack::SqliteFilesystem => {
            format!("sqlite://{}", dir.path().join("stowage.db").display())
        }
        Stack::PostgresS3 => {
            let store = TestS3::new("test").await;
            for (k, v) in store.vars() {
                vars.insert(k.into(), v);
            }
            bucket = Some(store.bucket.clone());
            s3 = Some(store);
            fresh_postgres_database().await
        }
    };
    vars.insert("DATABASE_URL".into(), database_url.clone());
    for (k, v) in options.vars {
        // An empty value unsets the variable.
        if v.is_empty() {
            vars.remove(k);
        } else {
            vars.insert(k.into(), v);
        }
    }
    let config = Config::from_vars(&vars).expect("a valid test configuration");
    let env = vars.clone();
    // As `serve` starts: the one start-up path, the migrations, the listener for other
    // instances' changes.
    let services = Services::build(&config).await.expect("the services");
    services.db.migrate().await.expect("the migrations");
    let state = web::AppState::build(config.clone(), services).await;
    state.db.listen_for_invalidations().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let app = web::router(state.clone());
    let shutdown = state.shutdown();
    tokio::spawn(async move { web::serve(listener, app, shutdown).await });

    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        stack,
        config,
        address,
        state,
        client,
        jar,
        dir,
        s3,
        bucket,
        env,
    }
}

impl TestApp {
    /// HEAD of an object straight from the test S3 server, bypassing stowage.
    pub async fn head_in_bucket(
        &self,
        bucket: &str,
        key: &str,
    ) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        let s3 = self.s3.as_ref().expect("an S3 stack");
        s3.client()
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{bucket}/{key} is not in the bucket: {e:?}"))
    }
}

pub fn body(bytes: Vec<u8>) -> ByteStream<'static> {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from(bytes))]))
}

/// A small but real PDF.
pub fn sample_pdf(marker: &str) -> Vec<u8> {
    format!(
        "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n% {marker}\ntrailer<</Root 1 0 R>>\n{PDF_END}"
    )
    .into_bytes()
}

/// How [`sample_pdf`] ends: the pointer to the cross-reference table, and the end marker.
pub const PDF_END: &str = "startxref\n9\n%%EOF\n";

/// A [`sample_pdf`] padded to exactly `size` bytes, still ending as a PDF does.
pub fn pdf_of_size(marker: &str, size: usize) -> Vec<u8> {
    let mut pdf = sample_pdf(marker);
    pdf.truncate(pdf.len() - PDF_END.len());
    pdf.resize(size - PDF_END.len(), b' ');
    pdf.extend_from_slice(PDF_END.as_bytes());
    pdf
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn storages(&self) -> &Storages {
        &self.state.storages
    }

    pub fn db(&self) -> &Database {
        &self.state.db
    }

    /// Creates a member directly; returns (user id, profile id).
    pub async fn create_member(&self, username: &str) -> (i64, i64) {
        let hash = hash_password(PASSWORD.to_owned()).await.unwrap();
        self.create_member_as(username, &format!("{username} display"), &hash)
            .await
    }

    /// A member shown as `display_name`, whose password hash is `hash` (one hash serves many
    /// members, where hashing each would cost the test seconds); returns (user id, profile id).
    pub async fn create_member_as(
        &self,
        username: &str,
        display_name: &str,
        hash: &str,
    ) -> (i64, i64) {
        let user = self
            .db()
            .create_user(username, hash, false, display_name)
            .await
            .unwrap();
        let profile = self
            .db()
            .find_profile_of_user(user.id)
            .await
            .unwrap()
            .unwrap();
        (user.id, profile.id)
    }

    /// Stores a resume for a profile the way an upload does; returns the key.
    pub async fn give_resume(&self, profile_id: i64, filename: &str, bytes: Vec<u8>) -> String {
        let key = format!(
            "resumes/{profile_id}/{}.pdf",
            stowage::storage::random_name()
        );
        let size = bytes.len() as i64;
        let stored = self
            .storages()
            .private
            .save(
                &key,
                body(bytes),
                &SaveOptions {
                    content_type: Some("application/pdf".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        self.db()
            .set_resume(profile_id, &key, filename, size, &stored.sha256.to_hex())
            .await
            .unwrap();
        key
    }

    /// The port the app listens on, for raw requests.
    pub fn port(&self) -> u16 {
        self.address.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The avatars (public storage) and resumes (private storage) that are stored, sorted.
    pub async fn media_objects(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for (storage, prefix) in [
            (&self.storages().public, "avatars/"),
            (&self.storages().private, "resumes/"),
        ] {
            keys.extend(
                storage
                    .list(prefix)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|o| o.key),
            );
        }
        keys.sort();
        keys
    }

    /// The one number a statement answers (`SELECT count(*) …`), from this app's database.
    pub async fn number(&self, sql: &str) -> i64 {
        let (n,): (i64,) = sqlx::query_as(sql)
            .fetch_one(self.db().pool())
            .await
            .unwrap();
        n
    }

    /// The avatars (every stored size) and resumes the profiles point at, sorted.
    pub async fn media_references(&self) -> Vec<String> {
        let mut keys: Vec<String> = stowage::media::references(self.db())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        keys.sort();
        keys
    }

    /// GET with this app's client (its cookies, no redirects followed).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// The body of a GET.
    pub async fn get_html(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// POST an urlencoded form with this app's client.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// The CSRF token in a page's form.
    pub async fn csrf_token_from(&self, path: &str) -> String {
        let html = self.get_html(path).await;
        extract_csrf(&html).unwrap_or_else(|| panic!("no CSRF token on {path}: {html}"))
    }

    pub async fn login(&self, username: &str, password: &str, next: &str) -> reqwest::Response {
        let token = self.csrf_token_from("/login").await;
        self.post_form(
            "/login",
            &[
                ("username", username),
                ("password", password),
                ("csrf_token", &token),
                ("next", next),
            ],
        )
        .await
    }

    /// The session cookie's value, if the client has one.
    pub fn session_cookie(&self) -> Option<String> {
        let url: reqwest::Url = self.address.parse().unwrap();
        let cookies = self.jar.cookies(&url)?;
        cookies
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix("stowage_session=").map(str::to_owned))
    }

    /// Every cookie the client holds for the app, as a `Cookie` header's value (the session
    /// and the CSRF cookie), for raw requests.
    pub fn cookie_header(&self) -> String {
        let url: reqwest::Url = self.address.parse().unwrap();
        self.jar
            .cookies(&url)
            .map(|c| c.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// A fresh client with no cookies, as a person who was sent a link.
    pub fn anonymous_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }
}

pub fn extract_csrf(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// A raw HTTP/1.1 request whose body is sent in `chunks` pieces, `pause` apart; returns the
/// response's status and text. The response is read while the body is still being sent, as a
/// server may answer (and close) before the body is complete.
pub async fn raw_request(
    port: u16,
    head: &str,
    body: &[u8],
    chunks: usize,
    pause: Duration,
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let mut request = vec![head.as_bytes().to_vec()];
    if !body.is_empty() {
        request.extend(body.chunks(body.len().div_ceil(chunks)).map(<[u8]>::to_vec));
    }
    let sender = tokio::spawn(async move {
        for piece in request {
            if writer.write_all(&piece).await.is_err() {
                return; // the server has answered and closed
            }
            tokio::time::sleep(pause).await;
        }
        let _ = writer.flush().await;
        // Keep the write half open until the response is read.
        std::future::pending::<()>().await;
    });
    let mut response = Vec::new();
    let mut buffer = [0u8; 8192];
    while let Ok(n) = reader.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..n]);
    }
    sender.abort();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (status, text)
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// A resume form's multipart body (this token, then `pdf` as `cv.pdf`) and its content type.
pub fn multipart_resume(token: &str, pdf: &[u8]) -> (String, Vec<u8>) {
    let boundary = "stowage-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"resume\"; filename=\"cv.pdf\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(pdf);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Polls `probe` until it says yes or `limit` passes; returns whether it did.
pub async fn eventually<F, Fut>(limit: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
