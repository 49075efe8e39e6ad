//! The S3 stack's store: the run's Garage (started by `scripts/garage`, which
//! `scripts/test-services` runs), with buckets and keys made per test through its admin API.
//!
//! Each [`TestS3`] has its own app key (read, write, owner on its buckets), its own read-only
//! key, a public bucket served as a website (Garage has no bucket policies: public avatars are
//! read through its website endpoint, as a CDN in front of a bucket serves them) and a private
//! bucket that nothing reads unsigned. The app reaches Garage through a forwarding proxy of the
//! test's own, which passes every request through unchanged and can record them, stop (an
//! outage of this test's S3 only), start again, or hold multipart parts back (a slow store).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

/// Where the run's Garage listens, from the file `scripts/garage` writes.
#[derive(Debug, Clone)]
pub struct Garage {
    pub s3: String,
    web: SocketAddr,
    web_domain: String,
    admin: String,
    token: String,
}

/// The run's Garage. Garage must be running: `scripts/test-services` starts it; a missing
/// server fails the test, it never skips.
pub fn garage() -> &'static Garage {
    static GARAGE: OnceLock<Garage> = OnceLock::new();
    GARAGE.get_or_init(|| {
        let dir = std::env::var("STOWAGE_GARAGE_DIR").unwrap_or_else(|_| {
            format!(
                "{}/stowage-garage",
                std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into())
            )
        });
        let file = format!("{dir}/env");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!("Garage is required for the S3 stack (run scripts/test-services): {file}: {e}")
        });
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} missing from {file}"))
                .to_owned()
        };
        Garage {
            s3: var("STOWAGE_GARAGE_S3"),
            web: var("STOWAGE_GARAGE_WEB").parse().expect("an address"),
            web_domain: var("STOWAGE_GARAGE_WEB_DOMAIN"),
            admin: var("STOWAGE_GARAGE_ADMIN"),
            token: var("STOWAGE_GARAGE_ADMIN_TOKEN"),
        }
    })
}

impl Garage {
    fn s3_addr(&self) -> SocketAddr {
        self.s3
            .trim_start_matches("http://")
            .parse()
            .expect("an address")
    }

    /// A call of the admin API (v2), its JSON answer.
    pub async fn admin(&self, endpoint: &str, body: serde_json::Value) -> serde_json::Value {
        let response = reqwest::Client::new()
            .post(format!("{}/v2/{endpoint}", self.admin))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("Garage's admin API ({endpoint}): {e}"));
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "Garage {endpoint}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// A new key: (access key id, secret).
    pub async fn create_key(&self, name: &str) -> (String, String) {
        let key = self
            .admin("CreateKey", serde_json::json!({ "name": name }))
            .await;
        (
            key["accessKeyId"].as_str().unwrap().to_owned(),
            key["secretAccessKey"].as_str().unwrap().to_owned(),
        )
    }

    /// Deletes a key: requests signed with it are refused from now on.
    pub async fn delete_key(&self, access_key: &str) {
        reqwest::Client::new()
            .post(format!("{}/v2/DeleteKey?id={access_key}", self.admin))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    /// A new bucket named `name`; returns its id.
    pub async fn create_bucket(&self, name: &str) -> String {
        let bucket = self
            .admin("CreateBucket", serde_json::json!({ "globalAlias": name }))
            .await;
        bucket["id"].as_str().unwrap().to_owned()
    }

    pub async fn allow(&self, bucket_id: &str, access_key: &str, read: bool, write: bool) {
        self.admin(
            "AllowBucketKey",
            serde_json::json!({
                "bucketId": bucket_id,
                "accessKeyId": access_key,
                "permissions": { "read": read, "write": write, "owner": write },
            }),
        )
        .await;
    }

    /// Serves the bucket anonymously on the website endpoint.
    pub async fn serve_as_website(&self, bucket_id: &str) {
        reqwest::Client::new()
            .post(format!("{}/v2/UpdateBucket?id={bucket_id}", self.admin))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({
                "websiteAccess": { "enabled": true, "indexDocument": "index.html" }
            }))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }
}

/// A request that passed through a test's front, as the store saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    /// Whether it carried a query-string signature (a presigned URL).
    pub presigned: bool,
    pub user_agent: String,
}

/// One test's buckets and keys on the run's Garage.
pub struct TestS3 {
    /// The app's S3 endpoint: this test's front to Garage.
    pub endpoint: String,
    /// Public media (avatars), served unsigned through [`TestS3::public_base`].
    pub bucket: String,
    /// Private media (resumes): nothing reads it unsigned.
    pub private_bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub read_only_access_key: String,
    pub read_only_secret_key: String,
    /// Where public objects are read: the website endpoint, through a front that names the
    /// bucket in the `Host` header as a CDN would (`AWS_S3_CUSTOM_DOMAIN`).
    pub public_base: String,
    bucket_ids: Vec<(String, String)>,
    front: Front,
    _cdn: Front,
}

impl TestS3 {
    /// Buckets named after `label` and two keys.
    pub async fn new(label: &str) -> Self {
        let garage = garage();
        let tag = hex::encode(rand::random::<[u8; 5]>());
        let (access_key, secret_key) = garage.create_key(&format!("{label}-{tag}-app")).await;
        let (read_only_access_key, read_only_secret_key) =
            garage.create_key(&format!("{label}-{tag}-read-only")).await;
        let bucket = format!("{label}-{tag}");
        let private_bucket = format!("{label}-{tag}-private");
        let mut bucket_ids = Vec::new();
        for name in [&bucket, &private_bucket] {
            let id = garage.create_bucket(name).await;
            garage.allow(&id, &access_key, true, true).await;
            garage.allow(&id, &read_only_access_key, true, false).await;
            bucket_ids.push((name.clone(), id));
        }
        garage.serve_as_website(&bucket_ids[0].1).await;
        let front = Front::start(garage.s3_addr(), None).await;
        let cdn = Front::start(garage.web, Some(format!("{bucket}{}", garage.web_domain))).await;
        Self {
            endpoint: format!("http://{}", front.addr),
            public_base: format!("http://{}", cdn.addr),
            bucket,
            private_bucket,
            access_key,
            secret_key,
            read_only_access_key,
            read_only_secret_key,
            bucket_ids,
            front,
            _cdn: cdn,
        }
    }

    /// The variables that put both media storages on these buckets.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DEFAULT_FILE_STORAGE", "s3".into()),
            ("AWS_S3_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_STORAGE_BUCKET_NAME", self.bucket.clone()),
            (
                "AWS_PRIVATE_STORAGE_BUCKET_NAME",
                self.private_bucket.clone(),
            ),
            ("AWS_S3_CUSTOM_DOMAIN", self.public_base.clone()),
        ]
    }

    /// Another bucket the app key may read and write, and the read-only key read.
    pub async fn create_bucket(&mut self, name: &str) {
        let garage = garage();
        let id = garage.create_bucket(name).await;
        garage.allow(&id, &self.access_key, true, true).await;
        garage
            .allow(&id, &self.read_only_access_key, true, false)
            .await;
        self.bucket_ids.push((name.to_owned(), id));
    }

    /// Another key with the app key's rights on this test's buckets.
    pub async fn create_app_key(&self, name: &str) -> (String, String) {
        self.create_key_allowed(name, true, true).await
    }

    /// Another key allowed to read and write this test's buckets as told.
    pub async fn create_key_allowed(
        &self,
        name: &str,
        read: bool,
        write: bool,
    ) -> (String, String) {
        let garage = garage();
        let key = garage.create_key(name).await;
        for (_, id) in &self.bucket_ids {
            garage.allow(id, &key.0, read, write).await;
        }
        key
    }

    /// An SDK client with the app key, straight to Garage (not through the front, so it
    /// works while the front is stopped).
    pub fn client(&self) -> aws_sdk_s3::Client {
        sdk_client(&garage().s3, &self.access_key, &self.secret_key)
    }

    /// Admits `origin` to POST and PUT straight to the private bucket, as the README's CORS
    /// rule does.
    pub async fn allow_direct_uploads_from(&self, origin: &str) {
        use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
        self.client()
            .put_bucket_cors()
            .bucket(&self.private_bucket)
            .cors_configuration(
                CorsConfiguration::builder()
                    .cors_rules(
                        CorsRule::builder()
                            .allowed_origins(origin)
                            .allowed_methods("POST")
                            .allowed_methods("PUT")
                            .allowed_headers("*")
                            .max_age_seconds(3000)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("setting the bucket's CORS rule");
    }

    /// Multipart uploads begun in the private bucket and neither completed nor aborted.
    pub async fn unfinished_uploads(&self) -> Vec<String> {
        let out = self
            .client()
            .list_multipart_uploads()
            .bucket(&self.private_bucket)
            .send()
            .await
            .expect("listing multipart uploads");
        out.uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_owned))
            .collect()
    }

    /// Takes this test's S3 away: open connections are cut, new ones refused.
    pub async fn stop(&mut self) {
        self.front.stop().await;
    }

    /// Gives it back, on the same address.
    pub fn restart(&mut self) {
        self.front.resume();
    }

    /// Makes every UploadPart wait `delay` before it reaches Garage, as a slow store would.
    pub fn delay_upload_parts(&self, delay: Duration) {
        self.front
            .part_delay
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Every request that went through the front so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.front.seen.lock().unwrap().clone()
    }
}

pub fn sdk_client(endpoint: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            access_key, secret_key, None, None, "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// An HTTP forwarder to one of Garage's endpoints. Requests go through as they came (the
/// `Host` header included, which signatures cover) unless `host` names another.
struct Front {
    addr: SocketAddr,
    target: SocketAddr,
    host: Option<String>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    part_delay: Arc<AtomicU64>,
    task: Option<JoinHandle<()>>,
    /// While stopped, the port stays bound but not listening: connections are refused, and no
    /// other test can take the port.
    reserved: Option<TcpSocket>,
}

impl Front {
    async fn start(target: SocketAddr, host: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut front = Self {
            addr: listener.local_addr().unwrap(),
            target,
            host,
            seen: Arc::default(),
            part_delay: Arc::default(),
            task: None,
            reserved: None,
        };
        front.task = Some(front.forward(listener));
        front
    }

    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.reserved = Some(crate::tcp_proxy::reserve(self.addr));
    }

    fn resume(&mut self) {
        let socket = self.reserved.take().expect("a stopped front");
        let listener = socket.listen(1024).unwrap();
        self.task = Some(self.forward(listener));
    }

    fn forward(&self, listener: TcpListener) -> JoinHandle<()> {
        let client: HyperClient<HttpConnector, hyper::body::Incoming> =
            HyperClient::builder(TokioExecutor::new()).build_http();
        let (target, host) = (self.target, self.host.clone());
        let (seen, part_delay) = (self.seen.clone(), self.part_delay.clone());
        tokio::spawn(async move {
            // Dropping the set (when the task is aborted) drops every connection.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let (client, host) = (client.clone(), host.clone());
                let (seen, part_delay) = (seen.clone(), part_delay.clone());
                let handler = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let (client, host) = (client.clone(), host.clone());
                    let (seen, part_delay) = (seen.clone(), part_delay.clone());
                    async move {
                        let query = req.uri().query().unwrap_or("");
                        seen.lock().unwrap().push(SeenRequest {
                            method: req.method().to_string(),
                            path: req.uri().path().to_owned(),
                            presigned: query.contains("X-Amz-Signature="),
                            user_agent: req
                                .headers()
                                .get(hyper::header::USER_AGENT)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned(),
                        });
                        let delay = part_delay.load(Ordering::Relaxed);
                        if delay > 0
                            && req.method() == hyper::Method::PUT
                            && query.contains("partNumber=")
                        {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        let path = req
                            .uri()
                            .path_and_query()
                            .map_or("/", |p| p.as_str())
                            .to_owned();
                        *req.uri_mut() = format!("http://{target}{path}").parse().unwrap();
                        if let Some(host) = &host {
                            req.headers_mut()
                                .insert(hyper::header::HOST, host.parse().unwrap());
                        }
                        client.request(req).await
                    }
                });
                connections.spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), handler)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        })
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
