//! The container contract, on the built binary as a platform runs it: `stowage serve` as a
//! child process with `PORT` set, stopped with SIGTERM, logging to stdout.
//!
//! `scripts/test` builds the release binary and names it in `STOWAGE_BIN`; run alone, these
//! tests use the debug binary cargo built for them.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::cookie::CookieStore;
use serde_json::Value;
use std::io::BufRead;
use std::process::{Child, Command};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

use crate::garage::TestS3;
use crate::helpers::{
    extract_csrf, fresh_postgres_database, multipart_resume, raw_request, sample_pdf, walk,
};
use crate::tcp_proxy::TcpProxy;

pub(crate) fn binary() -> PathBuf {
    std::env::var_os("STOWAGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_stowage")))
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The variables every served process gets: its own directory for data, SQLite and the
/// filesystem unless `vars` say otherwise, and nothing inherited from the test's environment.
pub(crate) fn base_vars(dir: &TempDir, port: u16) -> Vec<(String, String)> {
    let path = |p: &str| dir.path().join(p).display().to_string();
    [
        ("PORT", port.to_string()),
        ("SECRET_KEY", hex::encode(rand::random::<[u8; 32]>())),
        ("DATABASE_URL", format!("sqlite://{}", path("stowage.db"))),
        ("MEDIA_ROOT", path("media")),
        ("STATIC_ROOT", path("static")),
        ("LOG_FORMAT", "json".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// [`base_vars`] on production's stack: a fresh PostgreSQL database and buckets named after
/// `label` on the run's Garage, which the caller keeps (its front forwards the app's requests).
pub(crate) async fn postgres_s3_vars(
    dir: &TempDir,
    label: &str,
) -> (TestS3, String, Vec<(String, String)>) {
    let s3 = TestS3::new(label).await;
    let bucket = s3.bucket.clone();
    let mut vars = base_vars(dir, free_port());
    vars.retain(|(k, _)| k != "DATABASE_URL");
    vars.push(("DATABASE_URL".into(), fresh_postgres_database().await));
    vars.extend(s3.vars().into_iter().map(|(k, v)| (k.to_owned(), v)));
    (s3, bucket, vars)
}

/// The id of the first profile on the directory page.
pub(crate) async fn first_profile_id(client: &reqwest::Client, served: &Served) -> String {
    let directory = client
        .get(served.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    directory
        .split("href=\"/profiles/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a profile on the directory")
        .to_owned()
}

/// `stowage serve` running as a child process.
pub(crate) struct Served {
    child: Child,
    pub(crate) port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    _dir: Arc<TempDir>,
}

/// Starts `stowage` with `args` and exactly these variables (plus `PATH`), from the project
/// directory, where it finds `static/`.
pub(crate) fn start(args: &[&str], vars: &[(String, String)], dir: Arc<TempDir>) -> Served {
    let port = vars
        .iter()
        .find(|(k, _)| k == "PORT")
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("the stowage binary runs");
    let collect = |stream: Box<dyn std::io::Read + Send>| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        lines
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    Served {
        child,
        port,
        stdout,
        stderr,
        _dir: dir,
    }
}

impl Served {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn output(&self) -> String {
        let out = self.stdout.lock().unwrap().join("\n");
        let err = self.stderr.lock().unwrap().join("\n");
        format!("--- stdout\n{out}\n--- stderr\n{err}")
    }

    fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits for the "listening" log line, failing with the output if the process ends first.
    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("listening on http://"))
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "stowage exited with {status} before listening:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not listening after 30 s:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to end, at most `limit`.
    pub(crate) async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the readers take in what was written last.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn serve(vars: Vec<(String, String)>, dir: Arc<TempDir>) -> Served {
    let mut served = start(&["serve"], &vars, dir);
    served.ready().await;
    served
}

pub(crate) fn client() -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (client, jar)
}

/// Signs member "ada" up through the forms; returns the cookies (see [`sign_up_as`]).
async fn sign_up(
    client: &reqwest::Client,
    jar: &reqwest::cookie::Jar,
    served: &Served,
    password: &str,
) -> String {
    sign_up_as(client, jar, served, "ada", password).await
}

/// Signs a new member up through the forms; returns the client's cookies (the session and
/// the CSRF cookie) as a `Cookie` header's value, for raw requests.
pub(crate) async fn sign_up_as(
    client: &reqwest::Client,
    jar: &reqwest::cookie::Jar,
    served: &Served,
    username: &str,
    password: &str,
) -> String {
    let page = client.get(served.url("/signup")).send().await.unwrap();
    let token = extract_csrf(&page.text().await.unwrap()).expect("a CSRF token on /signup");
    let response = client
        .post(served.url("/signup"))
        .form(&[
            ("username", username),
            ("display_name", username),
            ("password", password),
            ("password2", password),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{}",
        served.output()
    );
    let cookies = jar.cookies(&served.url("/").parse().unwrap()).unwrap();
    let cookies = cookies.to_str().unwrap().to_owned();
    assert!(
        cookies.contains("stowage_session="),
        "a session cookie: {cookies}"
    );
    cookies
}

#[tokio::test]
async fn binds_port_answers_and_stops_on_sigterm() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let port = free_port();
    let mut served = serve(base_vars(&dir, port), dir).await;
    let bound = served
        .stdout_lines()
        .into_iter()
        .find(|l| l.contains("listening on"))
        .unwrap();
    assert!(bound.contains(&format!("127.0.0.1:{port}")), "{bound}");

    let http = reqwest::Client::new();
    let health = http.get(served.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(
        http.get(served.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Every HTML page carries the security headers.
    for path in ["/", "/login", "/no-such-page"] {
        let page = http.get(served.url(path)).send().await.unwrap();
        let headers = page.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }

    served.signal("TERM");
    let status = served.exit_within(Duration::from_secs(5)).await;
    assert!(status.success(), "{status}:\n{}", served.output());
    assert!(served.output().contains("shutdown signal received"));
}

#[tokio::test]
async fn sigterm_lets_a_slow_upload_finish_then_exits_zero() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut vars = base_vars(&dir, free_port());
    vars.push(("SHUTDOWN_GRACE_SECS".into(), "10".into()));
    let mut served = serve(vars, dir.clone()).await;
    let (client, jar) = client();
    let cookie = sign_up(&client, &jar, &served, "a slow upload password").await;
    let edit = client
        .get(served.url("/profile/edit"))
        .send()
        .await
        .unwrap();
    let token = extract_csrf(&edit.text().await.unwrap()).unwrap();

    // About 2 s to send a 200 KiB resume, in 20 pieces.
    let mut pdf = sample_pdf("slow");
    pdf.splice(9..9, std::iter::repeat_n(b' ', 200 * 1024));
    let (content_type, body) = multipart_resume(&token, &pdf);
    let head = format!(
        "POST /profile/resume HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {cookie}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        served.port,
        body.len()
    );
    let port = served.port;
    let upload = tokio::spawn(async move {
        raw_request(port, &head, &body, 20, Duration::from_millis(100)).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    served.signal("TERM");
    let signalled = Instant::now();

    // The listener closes; the upload in flight carries on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "new connections are refused while draining"
    );
    let (status, response) = upload.await.unwrap();
    assert_eq!(status, 303, "the upload completes:\n{response}");
    let status = served.exit_within(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}:\n{}", served.output());
    assert!(signalled.elapsed() < Duration::from_secs(10));

    // The resume is stored and referenced.
    let db = stowage::db::Database::connect(
        &format!("sqlite://{}", dir.path().join("stowage.db").display()),
        1,
    )
    .await
    .unwrap();
    let profile = db.list_profiles().await.unwrap().remove(0);
    let key = profile.resume_key.expect("the resume is referenced");
    let location = stowage::storage::filesystem::PRIVATE_LOCATION;
    let stored = std::fs::read(dir.path().join("media").join(location).join(&key))
        .expect("the resume is on disk");
    assert_eq!(stored, pdf);
}

#[tokio::test]
async fn the_grace_period_bounds_the_drain() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut vars = base_vars(&dir, free_port());
    vars.push(("SHUTDOWN_GRACE_SECS".into(), "1".into()));
    let mut served = serve(vars, dir).await;
    // A request that will not finish by itself: headers promise a body that never comes.
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", served.port))
        .await
        .unwrap();
    stalled
        .write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    served.signal("TERM");
    let status = served.exit_within(Duration::from_secs(5)).await;
    assert!(status.success(), "{status}:\n{}", served.output());
    assert!(signalled.elapsed() < Duration::from_secs(3));
    assert!(served.output().contains("SHUTDOWN_GRACE_SECS ran out"));
}

#[tokio::test]
async fn while_draining_readyz_answers_503_and_requests_are_still_served() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut vars = base_vars(&dir, free_port());
    vars.push(("SHUTDOWN_DRAIN_SECS".into(), "2".into()));
    let mut served = serve(vars, dir).await;
    let http = reqwest::Client::new();
    let ready = http.get(served.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(ready.headers().get("connection").is_none(), "kept alive");

    let signalled = Instant::now();
    served.signal("TERM");
    // At once: not ready, so a balancer stops sending here...
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let ready = http.get(served.url("/readyz")).send().await.unwrap();
        if ready.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(ready.headers()["connection"], "close");
            assert!(ready.text().await.unwrap().contains("draining"));
            break;
        }
        assert!(Instant::now() < deadline, "/readyz still answers ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... while what it still receives is served, on connections it then closes.
    let page = http.get(served.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["connection"], "close");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "still draining"
    );
    // Then the listener closes and the process exits.
    let status = served.exit_within(Duration::from_secs(5)).await;
    assert!(status.success(), "{status}:\n{}", served.output());
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "drained for 2 s"
    );
    assert!(served.output().contains("draining: /readyz answers 503"));
}

#[tokio::test]
async fn bad_configuration_fails_fast_naming_the_variable() {
    for (var, value) in [
        ("PORT", "eighty"),
        ("DEFAULT_FILE_STORAGE", "s3"),
        ("REQUEST_TIMEOUT_SECS", "0"),
        ("FORCE_HTTPS", "true"),
        ("DATABASE_URL", "mysql://localhost/stowage"),
    ] {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut vars = base_vars(&dir, free_port());
        vars.retain(|(k, _)| k != var);
        vars.push((var.into(), value.into()));
        let mut run = start(&["serve"], &vars, dir);
        let status = run.exit_within(Duration::from_secs(5)).await;
        assert!(!status.success(), "{var}={value}");
        let stderr = run.stderr.lock().unwrap().join("\n");
        let named = if var == "DEFAULT_FILE_STORAGE" {
            "AWS_STORAGE_BUCKET_NAME"
        } else {
            var
        };
        assert!(stderr.contains(named), "{var}={value}: {stderr}");
    }
}

fn postgres_target() -> std::net::SocketAddr {
    "127.0.0.1:5432".parse().unwrap()
}

/// `fresh_postgres_database`'s URL, reached through `proxy`, with `sslmode=require`.
async fn postgres_through(proxy: &TcpProxy) -> (String, String) {
    let direct = fresh_postgres_database().await;
    let mut url = url::Url::parse(&direct).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    url.set_query(Some("sslmode=require"));
    let name = url.path().trim_start_matches('/').to_owned();
    (url.to_string(), name)
}

#[tokio::test]
async fn readyz_follows_the_database_over_tls_and_service_resumes() {
    let mut proxy = TcpProxy::start(postgres_target()).await;
    let (url, name) = postgres_through(&proxy).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut vars = base_vars(&dir, free_port());
    vars.retain(|(k, _)| k != "DATABASE_URL");
    vars.push(("DATABASE_URL".into(), url));
    vars.push(("DATABASE_POOL_SIZE".into(), "3".into()));
    let mut served = serve(vars, dir).await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(served.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        http.get(served.url("/")).send().await.unwrap().status(),
        StatusCode::OK
    );

    // The app's connections are encrypted (sslmode=require), and the pool's stay within it
    // (beside them, one listens for other instances' cache invalidations).
    let admin = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    let (connections, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1",
    )
    .bind(&name)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!((2..=4).contains(&connections), "{connections}");
    assert_eq!(encrypted, connections);
    let (listeners,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
    )
    .bind(&name)
    .bind(stowage::db::invalidation::LISTENER_NAME)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(listeners, 1, "one listening connection");

    proxy.stop().await;
    let ready = http.get(served.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.text().await.unwrap(),
        "not ready: database not answering"
    );
    let page = http.get(served.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.text().await.unwrap().contains("not answering"));
    assert_eq!(
        http.get(served.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "healthz touches nothing"
    );

    proxy.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = http.get(served.url("/")).send().await.unwrap().status();
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        http.get(served.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    served.signal("TERM");
    assert!(served.exit_within(Duration::from_secs(5)).await.success());
}

#[tokio::test]
async fn a_database_down_at_start_up_is_waited_for_then_given_up_on() {
    // Down, then back within DATABASE_CONNECT_TIMEOUT_SECS: the app starts.
    let mut proxy = TcpProxy::stopped(postgres_target()).await;
    let (url, _) = postgres_through(&proxy).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut vars = base_vars(&dir, free_port());
    vars.retain(|(k, _)| k != "DATABASE_URL");
    vars.push(("DATABASE_URL".into(), url.clone()));
    vars.push(("DATABASE_CONNECT_TIMEOUT_SECS".into(), "20".into()));
    let mut served = start(&["serve"], &vars, dir.clone());
    // It says so as it waits (within 10 s however loaded the machine), and stays up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served.output().contains("is not answering yet") {
        assert!(Instant::now() < deadline, "{}", served.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served.child.try_wait().unwrap().is_none(), "still waiting");
    proxy.resume();
    served.ready().await;
    served.signal("TERM");
    assert!(served.exit_within(Duration::from_secs(5)).await.success());

    // Never back: a clear message and a non-zero exit once the time is up.
    proxy.stop().await;
    let mut vars = base_vars(&dir, free_port());
    vars.retain(|(k, _)| k != "DATABASE_URL");
    vars.push(("DATABASE_URL".into(), url));
    vars.push(("DATABASE_CONNECT_TIMEOUT_SECS".into(), "2".into()));
    let started = Instant::now();
    let mut failed = start(&["serve"], &vars, dir);
    let status = failed.exit_within(Duration::from_secs(10)).await;
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    let stderr = failed.stderr.lock().unwrap().join("\n");
    assert!(
        stderr.contains("DATABASE_URL") && stderr.contains("DATABASE_CONNECT_TIMEOUT_SECS"),
        "{stderr}"
    );
}

#[tokio::test]
async fn in_production_only_migrate_migrates_and_serve_names_it() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut vars = base_vars(&dir, free_port());
    vars.push(("STOWAGE_ENV".into(), "production".into()));
    // Without its public origin, production does not serve.
    let mut unnamed = start(&["serve"], &vars, dir.clone());
    assert!(!unnamed.exit_within(Duration::from_secs(10)).await.success());
    let stderr = unnamed.stderr.lock().unwrap().join("\n");
    assert!(stderr.contains("SITE_URL: is required"), "{stderr}");
    vars.push(("SITE_URL".into(), "https://members.example.org".into()));
    let mut refused = start(&["serve"], &vars, dir.clone());
    assert!(!refused.exit_within(Duration::from_secs(10)).await.success());
    let stderr = refused.stderr.lock().unwrap().join("\n");
    assert!(stderr.contains("run `stowage migrate` first"), "{stderr}");

    let mut migrate = start(&["migrate"], &vars, dir.clone());
    assert!(migrate.exit_within(Duration::from_secs(20)).await.success());
    let mut served = start(&["serve"], &vars, dir);
    served.ready().await;
    served.signal("TERM");
    assert!(served.exit_within(Duration::from_secs(5)).await.success());
}

#[tokio::test]
async fn json_logs_carry_request_ids_and_never_secrets_even_at_trace() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (s3, _bucket, mut vars) = postgres_s3_vars(&dir, "logs").await;
    let secret_key = vars
        .iter()
        .find(|(k, _)| k == "SECRET_KEY")
        .unwrap()
        .1
        .clone();
    vars.push(("RUST_LOG".into(), "trace".into()));
    let mut served = serve(vars, dir).await;
    let (client, jar) = client();
    let password = "hunter2-but-much-longer";
    let cookie = sign_up(&client, &jar, &served, password).await;
    let edit = client
        .get(served.url("/profile/edit"))
        .send()
        .await
        .unwrap();
    let token = extract_csrf(&edit.text().await.unwrap()).unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf_token", token.clone())
        .part(
            "resume",
            reqwest::multipart::Part::bytes(sample_pdf("logs"))
                .file_name("cv.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    let uploaded = client
        .post(served.url("/profile/resume"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::SEE_OTHER);
    let id = first_profile_id(&client, &served).await;

    let resume = client
        .get(served.url(&format!("/resume/{id}")))
        .header("x-request-id", "req-from-the-router-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resume.status(), StatusCode::FOUND);
    assert_eq!(resume.headers()["x-request-id"], "req-from-the-router-42");
    let location = resume.headers()["location"].to_str().unwrap().to_owned();
    let signature = location
        .split("X-Amz-Signature=")
        .nth(1)
        .expect("a presigned URL")
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let stylesheet = client
        .get(served.url("/static/css/site.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(stylesheet.status(), StatusCode::OK);
    let generated = client.get(served.url("/healthz")).send().await.unwrap();
    let generated_id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(generated_id.len() >= 32, "a generated id: {generated_id}");

    served.signal("TERM");
    assert!(served.exit_within(Duration::from_secs(10)).await.success());
    let lines = served.stdout_lines();
    assert!(
        lines.len() > 50,
        "trace logging is on: {} lines",
        lines.len()
    );

    let mut entries = Vec::new();
    for line in &lines {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        entries.push(entry);
    }
    let request = |id: &str| {
        entries
            .iter()
            .find(|e| e["message"] == "request" && e["request.id"] == id)
            .unwrap_or_else(|| panic!("no request line for {id}"))
            .clone()
    };
    let line = request("req-from-the-router-42");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["http.method"], "GET");
    assert_eq!(line["http.route"], "/resume/{id}");
    assert_eq!(line["http.status"], 302);
    assert!(line["latency_ms"].is_number(), "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
    assert_eq!(request(&generated_id)["http.route"], "/healthz");
    let asset = entries
        .iter()
        .find(|e| e["message"] == "request" && e["http.route"] == "/static/{*file}");
    assert!(asset.is_some(), "static files are logged under their route");

    let everything = lines.join("\n");
    for (what, secret) in [
        ("a presigned URL", "X-Amz-Signature"),
        ("the signature", signature.as_str()),
        ("the password", password),
        ("the session cookie", cookie.as_str()),
        ("the CSRF token", token.as_str()),
        ("the S3 secret key", s3.secret_key.as_str()),
        ("the app's secret key", secret_key.as_str()),
    ] {
        assert!(!everything.contains(secret), "{what} is in the log");
    }
}

#[tokio::test]
async fn forwarded_headers_count_only_behind_a_trusted_proxy() {
    let forwarded = |request: reqwest::RequestBuilder| {
        request
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-for", "198.51.100.7, 203.0.113.9")
    };
    for trust in [false, true] {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut vars = base_vars(&dir, free_port());
        vars.push(("TRUST_PROXY".into(), trust.to_string()));
        let mut served = serve(vars, dir).await;
        let (client, jar) = client();
        sign_up(&client, &jar, &served, "forwarded password").await;

        // A visitor's first form sets the CSRF cookie; signing in sets the session cookie.
        let (visitor, _) = self::client();
        let login = forwarded(visitor.get(served.url("/login")))
            .header("x-request-id", "forwarded-login")
            .send()
            .await
            .unwrap();
        let set_cookie = |response: &reqwest::Response, name: &str| {
            response
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|c| c.to_str().unwrap().to_owned())
                .find(|c| c.starts_with(name))
                .unwrap_or_else(|| panic!("a {name} cookie"))
        };
        let csrf_cookie = set_cookie(&login, "stowage_csrf=");
        let token = extract_csrf(&login.text().await.unwrap()).unwrap();
        let signed_in = forwarded(visitor.post(served.url("/login")))
            .form(&[
                ("username", "ada"),
                ("password", "forwarded password"),
                ("csrf_token", &token),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        for cookie in [csrf_cookie, set_cookie(&signed_in, "stowage_session=")] {
            assert_eq!(
                cookie.contains("; Secure"),
                trust,
                "TRUST_PROXY={trust}: {cookie}"
            );
            assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
        }

        let id = first_profile_id(&client, &served).await;
        let page = forwarded(client.get(served.url(&format!("/profiles/{id}"))))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let scheme = if trust { "https" } else { "http" };
        let canonical = format!(
            "<link rel=\"canonical\" href=\"{scheme}://127.0.0.1:{}/profiles/{id}\">",
            served.port
        );
        assert!(page.contains(&canonical), "TRUST_PROXY={trust}: {page}");

        served.signal("TERM");
        assert!(served.exit_within(Duration::from_secs(5)).await.success());
        let line: Value = served
            .stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["request.id"] == "forwarded-login" && e["message"] == "request")
            .unwrap();
        let client_addr = if trust { "203.0.113.9" } else { "127.0.0.1" };
        assert_eq!(line["client.addr"], client_addr, "TRUST_PROXY={trust}");
        assert_eq!(line["https"], trust);
    }
}

#[tokio::test]
async fn force_https_redirects_plain_http_but_not_health_checks() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut vars = base_vars(&dir, free_port());
    vars.push(("TRUST_PROXY".into(), "true".into()));
    vars.push(("FORCE_HTTPS".into(), "true".into()));
    let mut served = serve(vars, dir).await;
    let (client, _) = client();
    let plain = client
        .get(served.url("/profiles/1?tab=files"))
        .header("host", "members.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        plain.headers()["location"],
        "https://members.example.org/profiles/1?tab=files"
    );
    let form = client
        .post(served.url("/login"))
        .header("host", "members.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(
        form.status(),
        StatusCode::PERMANENT_REDIRECT,
        "keeps the method"
    );
    for probe in ["/healthz", "/readyz"] {
        let response = client.get(served.url(probe)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{probe}");
    }
    let secure = client
        .get(served.url("/login"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(secure.status(), StatusCode::OK);
    assert_eq!(
        secure.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    served.signal("INT");
    assert!(served.exit_within(Duration::from_secs(5)).await.success());
}

#[tokio::test]
async fn a_slow_upload_is_cut_off_by_its_timeout_and_leaves_nothing() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut vars = base_vars(&dir, free_port());
    vars.push(("UPLOAD_TIMEOUT_SECS".into(), "1".into()));
    let served = serve(vars, dir.clone()).await;
    let (client, jar) = client();
    let cookie = sign_up(&client, &jar, &served, "a slowloris password").await;
    let edit = client
        .get(served.url("/profile/edit"))
        .send()
        .await
        .unwrap();
    let token = extract_csrf(&edit.text().await.unwrap()).unwrap();

    // A slowloris: the body trickles in over about 4 s.
    let (content_type, body) = multipart_resume(&token, &sample_pdf("slowloris"));
    let head = format!(
        "POST /profile/resume HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let started = Instant::now();
    let (status, response) =
        raw_request(served.port, &head, &body, 8, Duration::from_millis(500)).await;
    assert_eq!(status, 408, "{response}");
    assert!(
        response.contains("took longer than 1 seconds"),
        "{response}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let db = stowage::db::Database::connect(
        &format!("sqlite://{}", dir.path().join("stowage.db").display()),
        1,
    )
    .await
    .unwrap();
    let profile = db.list_profiles().await.unwrap().remove(0);
    assert!(profile.resume_key.is_none(), "no row points anywhere");
    let private = dir
        .path()
        .join("media")
        .join(stowage::storage::filesystem::PRIVATE_LOCATION);
    let files: Vec<_> = walk(&private);
    assert!(files.is_empty(), "nothing half-written: {files:?}");
}
