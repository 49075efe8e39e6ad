//! Several instances, one truth: three `stowage serve` processes (the release binary) on one
//! PostgreSQL and the run's Garage, behind HAProxy configured by `deploy/haproxy.cfg`. Any
//! instance serves any request; a sign-out on one reaches the others at once; sign-in failures
//! spread over the three lock the username as one would; and restarting each instance in turn
//! under load fails no request.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION};
use tempfile::TempDir;

use crate::garage::TestS3;
use crate::helpers::{extract_csrf, multipart_resume, sample_pdf};
use crate::hostile::accounts::sign_in_at;
use crate::process::{Served, client, free_port, postgres_s3_vars, serve};

const PASSWORD: &str = "cluster test password 1843";

/// Three instances behind HAProxy.
struct Cluster {
    instances: Vec<Served>,
    vars: Vec<(String, String)>,
    dir: Arc<TempDir>,
    balancer: String,
    /// HAProxy's stats socket.
    stats: std::path::PathBuf,
    haproxy: Child,
    _s3: TestS3,
}

impl Cluster {
    /// `extra` variables are given to every instance.
    async fn start(label: &str, extra: &[(&str, &str)]) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let (s3, _, mut vars) = postgres_s3_vars(&dir, label).await;
        vars.retain(|(k, _)| k != "PORT");
        vars.extend(
            [("TRUST_PROXY", "true"), ("SHUTDOWN_DRAIN_SECS", "2")]
                .iter()
                .chain(extra)
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut instances = Vec::new();
        for _ in 0..3 {
            instances.push(serve(with_port(&vars, free_port()), dir.clone()).await);
        }
        let port = free_port();
        let address = |served: &Served| format!("127.0.0.1:{}", served.port);
        // A second configuration file: the stats socket the test reads the servers' states
        // from, beside the deployment's own configuration.
        let stats = dir.path().join("haproxy.sock");
        let stats_config = dir.path().join("stats.cfg");
        std::fs::write(
            &stats_config,
            format!("global\n    stats socket {} mode 600\n", stats.display()),
        )
        .unwrap();
        let haproxy = Command::new("haproxy")
            .args(["-f", "deploy/haproxy.cfg", "-f"])
            .arg(&stats_config)
            .arg("-db")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("STOWAGE_LB_BIND", format!("127.0.0.1:{port}"))
            .env("STOWAGE_WEB1", address(&instances[0]))
            .env("STOWAGE_WEB2", address(&instances[1]))
            .env("STOWAGE_WEB3", address(&instances[2]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy runs (scripts/test-services installs it)");
        let cluster = Self {
            instances,
            vars,
            dir,
            balancer: format!("http://127.0.0.1:{port}"),
            stats,
            haproxy,
            _s3: s3,
        };
        cluster.wait_until_every_instance_is_in_rotation().await;
        cluster
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.balancer)
    }

    /// Waits until the balancer answers and has every instance in rotation (its health
    /// checks passed `rise` times), as its stats socket says.
    async fn wait_until_every_instance_is_in_rotation(&self) {
        self.wait_until_up(&[0, 1, 2]).await;
    }

    /// Waits (polling HAProxy's stats socket, 20 s at most) until the servers of `instances`
    /// are `UP`.
    async fn wait_until_up(&self, instances: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let states = self.server_states().await;
            let up = instances.iter().all(|i| {
                states
                    .iter()
                    .any(|(name, state)| *name == format!("web{}", i + 1) && state == "UP")
            });
            if up {
                return;
            }
            assert!(Instant::now() < deadline, "not in rotation: {states:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Each server of the backend and its state (`UP`, `DOWN`, `UP 1/2`…), or nothing while
    /// HAProxy is not listening yet.
    async fn server_states(&self) -> Vec<(String, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut socket) = tokio::net::UnixStream::connect(&self.stats).await else {
            return Vec::new();
        };
        if socket.write_all(b"show stat\n").await.is_err() {
            return Vec::new();
        }
        let mut csv = String::new();
        let _ = socket.read_to_string(&mut csv).await;
        // pxname, svname, …, status (the 18th column).
        csv.lines()
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|fields| {
                fields.len() > 17 && fields[0] == "stowage" && fields[1].starts_with("web")
            })
            .map(|fields| (fields[1].to_owned(), fields[17].to_owned()))
            .collect()
    }

    /// Stops instance `i` as a platform does (SIGTERM), waits for it to exit, and starts it
    /// again on the same port; returns once the balancer has taken it back.
    async fn restart(&mut self, i: usize) {
        let port = self.instances[i].port;
        self.instances[i].signal("TERM");
        let status = self.instances[i].exit_within(Duration::from_secs(30)).await;
        assert!(
            status.success(),
            "{status}:\n{}",
            self.instances[i].output()
        );
        self.instances[i] = serve(with_port(&self.vars, port), self.dir.clone()).await;
        self.wait_until_up(&[i]).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
    }
}

fn with_port(vars: &[(String, String)], port: u16) -> Vec<(String, String)> {
    let mut vars = vars.to_vec();
    vars.push(("PORT".into(), port.to_string()));
    vars
}

/// The `Cookie` header the jar sends to 127.0.0.1.
fn cookies(jar: &Jar) -> String {
    let url = "http://127.0.0.1/".parse().unwrap();
    jar.cookies(&url)
        .expect("cookies")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Signs `username` up at `base` with `client`.
async fn sign_up(client: &reqwest::Client, base: &str, username: &str) {
    let page = client.get(format!("{base}/signup")).send().await.unwrap();
    let token = extract_csrf(&page.text().await.unwrap()).unwrap();
    let response = client
        .post(format!("{base}/signup"))
        .form(&[
            ("username", username),
            ("display_name", username),
            ("password", PASSWORD),
            ("password2", PASSWORD),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

/// The text of the page at `url`.
async fn page(client: &reqwest::Client, url: String) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// Posts a resume through the form at `base`; returns the member's `/resume/{id}` path.
async fn upload_resume(client: &reqwest::Client, base: &str, pdf: &[u8]) -> String {
    let token = extract_csrf(&page(client, format!("{base}/profile/edit")).await).unwrap();
    let (content_type, body) = multipart_resume(&token, pdf);
    let response = client
        .post(format!("{base}/profile/resume"))
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = page(client, format!("{base}/profile/edit")).await;
    let marker = "href=\"/profiles/";
    let start = page.find(marker).expect("a link to the profile") + marker.len();
    let id = page[start..].split('"').next().unwrap();
    format!("/resume/{id}")
}

/// What `/resume/...` at `base` answers a request carrying `cookie`: the bucket's URL it
/// redirects a member to, or the status it refuses with (403 for a visitor).
async fn resume_answer(base: &str, path: &str, cookie: &str) -> Result<String, StatusCode> {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}{path}"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    match response.status() {
        StatusCode::FOUND => Ok(response.headers()[LOCATION].to_str().unwrap().to_owned()),
        status => Err(status),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_instance_serves_any_request_and_a_sign_out_reaches_them_all() {
    // Caches a minute long: only the invalidation can tell the other instances.
    let cluster = Cluster::start("cluster", &[("CACHE_TTL_SECS", "60")]).await;
    let (ada, jar) = client();
    sign_up(&ada, &cluster.balancer, "ada").await;
    let direct: Vec<String> = cluster
        .instances
        .iter()
        .map(|served| served.url(""))
        .collect();
    // A resume uploaded on the first instance is served by the others, to the same session.
    let pdf = sample_pdf("cluster");
    let resume = upload_resume(&ada, &direct[0], &pdf).await;
    let cookie = cookies(&jar);
    assert!(cookie.contains("stowage_session="), "{cookie}");
    let mut served_at = Vec::new();
    for base in &direct {
        let location = resume_answer(base, &resume, &cookie).await.unwrap();
        assert!(location.contains("/resumes/"), "{base}: {location}");
        served_at.push(location.split('?').next().unwrap().to_owned());
    }
    assert!(served_at.windows(2).all(|w| w[0] == w[1]), "{served_at:?}");
    let bytes = reqwest::get(resume_answer(&direct[2], &resume, &cookie).await.unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.to_vec(), pdf);

    // Signed out on the first instance: within a second the others refuse the session too
    // (a visitor's 403, "members only").
    let page = ada
        .get(format!("{}/profile/edit", direct[0]))
        .send()
        .await
        .unwrap();
    let token = extract_csrf(&page.text().await.unwrap()).unwrap();
    let out = ada
        .post(format!("{}/logout", direct[0]))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let signed_out = Instant::now();
    for base in &direct[1..] {
        loop {
            let answer = resume_answer(base, &resume, &cookie).await;
            if answer == Err(StatusCode::FORBIDDEN) {
                break;
            }
            assert!(answer.is_ok(), "{base}: {answer:?}");
            assert!(
                signed_out.elapsed() < Duration::from_secs(1),
                "{base} still serves the resume to a signed-out session"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Posts the sign-in form at `base` as a fresh visitor; the answer's status.
async fn sign_in(base: &str, username: &str, password: &str) -> StatusCode {
    sign_in_at(&client().0, base, username, password)
        .await
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_failures_spread_over_the_instances_lock_the_username() {
    let cluster = Cluster::start("throttle", &[]).await;
    let (ada, _) = client();
    sign_up(&ada, &cluster.balancer, "ada").await;
    let direct: Vec<String> = cluster.instances.iter().map(|s| s.url("")).collect();
    // LOGIN_FAILURE_LIMIT (5) failures, taken in turn by the three instances...
    for attempt in 0..5 {
        let status = sign_in(&direct[attempt % 3], "ada", "not the password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    // ... lock the username on every one of them, the right password included.
    for base in &direct {
        assert_eq!(
            sign_in(base, "ada", PASSWORD).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{base}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_each_instance_in_turn_under_load_fails_no_request() {
    let mut cluster = Cluster::start("rolling", &[]).await;
    let (ada, jar) = client();
    sign_up(&ada, &cluster.balancer, "ada").await;
    let resume = upload_resume(&ada, &cluster.balancer, &sample_pdf("rolling")).await;
    let cookie = cookies(&jar);

    // Through the balancer, for as long as the restarts take, each client on kept-alive
    // connections: 12 members following their resume link (a GET, which HAProxy may retry)
    // and 4 visitors posting the sign-out form (a POST, which it may not: only the drain keeps
    // these from reaching an instance that is closing).
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut load = tokio::task::JoinSet::new();
    for client_number in 0..16 {
        let (client, _) = client();
        let request = if client_number < 12 {
            client
                .get(cluster.url(&resume))
                .header(COOKIE, cookie.clone())
        } else {
            let page = client.get(cluster.url("/login")).send().await.unwrap();
            let token = extract_csrf(&page.text().await.unwrap()).unwrap();
            client
                .post(cluster.url("/logout"))
                .form(&[("csrf_token", token)])
        };
        let (stop, served, failures) = (stop.clone(), served.clone(), failures.clone());
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match request.try_clone().unwrap().send().await {
                    Ok(response) if response.status().is_redirection() => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(response) => failures
                        .lock()
                        .unwrap()
                        .push(format!("answered {}", response.status())),
                    Err(e) => failures.lock().unwrap().push(format!("{e:?}")),
                }
            }
        });
    }
    for i in 0..3 {
        cluster.restart(i).await;
    }
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    let failures = failures.lock().unwrap();
    let served = served.load(Ordering::Relaxed);
    assert!(served > 300, "only {served} requests were served");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        served + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
}
