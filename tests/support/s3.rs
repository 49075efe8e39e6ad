//! A real S3-compatible server for the tests and benchmarks: `s3s-fs` (strict SigV4 header and
//! presigned-URL checks, expiry, multipart) on a local port, data in a directory of its own.
//!
//! What it adds to s3s-fs, each as real S3 does it:
//! - a bucket policy: anonymous `GetObject`/`HeadObject` is allowed except under `private/`
//!   (the README's alternative to ACLs for public media);
//! - a read-only key pair, refused anything but reads;
//! - `response-content-disposition` / `response-content-type` overrides on signed GETs, which
//!   s3s-fs validates as part of the signature but does not apply to the response;
//! - ETags in object listings, and listings paged from one walk of the bucket (s3s-fs walks
//!   it again for every page);
//! - `TCP_NODELAY` on its connections;
//! - the bucket CORS rule the README gives for direct uploads, for any origin: preflights are
//!   answered and responses to a browser carry `Access-Control-Allow-Origin`;
//! - a record of the requests it received ([`S3Server::requests`]), for tests that check what
//!   reached the storage (a browser following a presigned URL).

use std::path::PathBuf;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::path::S3Path;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Result, s3_error};
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

pub const ACCESS_KEY: &str = "stowage-test-key";
pub const SECRET_KEY: &str = "stowage-test-secret-0123456789abcdef";
/// A read-only key pair, like the seed's live read-only key: it may list and read, nothing else.
pub const READ_ONLY_ACCESS_KEY: &str = "stowage-read-only-key";
pub const READ_ONLY_SECRET_KEY: &str = "stowage-read-only-secret-0123456789abcdef";

/// When set, every request is printed to stderr as `METHOD /path` (no query string), so a
/// benchmark can count what reached the server.
pub static LOG_REQUESTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Milliseconds each request waits before it is answered, to stand for the round trip to a
/// remote S3 (0: none).
pub static LATENCY_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Signed requests pass, but the read-only key's only when they read; anonymous ones may only
/// read objects outside `private/`.
struct PublicReadExceptPrivate;

#[async_trait::async_trait]
impl S3Access for PublicReadExceptPrivate {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name();
        if let Some(credentials) = cx.credentials() {
            let reads = matches!(
                op,
                "GetObject"
                    | "HeadObject"
                    | "ListObjects"
                    | "ListObjectsV2"
                    | "HeadBucket"
                    | "ListBuckets"
                    | "GetBucketLocation"
            );
            return if credentials.access_key != READ_ONLY_ACCESS_KEY || reads {
                Ok(())
            } else {
                Err(s3_error!(AccessDenied, "This key may only read"))
            };
        }
        let read = matches!(op, "GetObject" | "HeadObject");
        match cx.s3_path() {
            S3Path::Object { key, .. } if read && !key.starts_with("private/") => Ok(()),
            _ => Err(s3_error!(AccessDenied, "Signature is required")),
        }
    }
}

/// s3s-fs, with what S3 does and it does not: ETags in object listings. An object stored
/// through the API has its ETag in s3s-fs's own record; one written straight into the data
/// directory (as the benchmarks do) gets the MD5 of its bytes, computed once.
struct ListedETags {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    computed: std::sync::Mutex<std::collections::HashMap<(PathBuf, u64), String>>,
    /// Listings in progress: the rest of a listing, by continuation token (see
    /// `list_objects_v2`).
    listings: std::sync::Mutex<std::collections::HashMap<String, Listing>>,
}

/// The objects under `prefix` in the bucket directory `root`, sorted by key: one synchronous
/// walk of the deepest directory the prefix names, as s3s-fs keys its files.
fn walk(root: &std::path::Path, prefix: &str) -> std::io::Result<Vec<s3s::dto::Object>> {
    let start = match prefix.rfind('/') {
        Some(slash) => root.join(&prefix[..slash]),
        None => root.to_owned(),
    };
    let mut objects = Vec::new();
    let mut dirs = vec![start];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let metadata = entry.metadata()?;
            if metadata.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            let path = entry.path();
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let Some(key) = relative
                .iter()
                .map(|part| part.to_str())
                .collect::<Option<Vec<_>>>()
                .map(|parts| parts.join("/"))
            else {
                continue;
            };
            if !key.starts_with(prefix) {
                continue;
            }
            objects.push(s3s::dto::Object {
                key: Some(key),
                size: Some(i64::try_from(metadata.len()).unwrap_or(i64::MAX)),
                last_modified: metadata.modified().ok().map(s3s::dto::Timestamp::from),
                ..Default::default()
            });
        }
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(objects)
}

/// A listing taken whole at its first page, served a page at a time.
struct Listing {
    output: s3s::dto::ListObjectsV2Output,
    objects: std::sync::Arc<Vec<s3s::dto::Object>>,
    offset: usize,
}

/// `impl S3 for ListedETags`: the listed operations go to s3s-fs as they are; `$extra` holds
/// the rest. (A macro for the whole impl, so `async_trait` sees the expanded methods.)
macro_rules! forward_to_fs {
    ($($op:ident: $input:ident => $output:ident),* $(,)?; $($extra:tt)*) => {
        #[async_trait::async_trait]
        impl s3s::S3 for ListedETags {
            $(
                async fn $op(
                    &self,
                    req: s3s::S3Request<s3s::dto::$input>,
                ) -> S3Result<s3s::S3Response<s3s::dto::$output>> {
                    self.fs.$op(req).await
                }
            )*
            $($extra)*
        }
    };
}

impl ListedETags {
    fn add_etag(&self, bucket: &str, object: &mut s3s::dto::Object) {
        if object.e_tag.is_none()
            && let Some(key) = &object.key
        {
            object.e_tag = self.etag(bucket, key).map(s3s::dto::ETag::Strong);
        }
    }

    fn etag(&self, bucket: &str, key: &str) -> Option<String> {
        // s3s-fs names its records with URL-safe, unpadded base64.
        let b64 = |s: &str| {
            aws_smithy_types::base64::encode(s)
                .replace('+', "-")
                .replace('/', "_")
                .trim_end_matches('=')
                .to_owned()
        };
        let record = self.root.join(format!(
            ".bucket-{}.object-{}.internal.json",
            b64(bucket),
            b64(key)
        ));
        if let Ok(text) = std::fs::read(&record)
            && let Ok(info) = serde_json::from_slice::<serde_json::Value>(&text)
            && let Some(etag) = info["e_tag"].as_str()
        {
            return Some(etag.to_owned());
        }
        let path = self.root.join(bucket).join(key);
        let size = std::fs::metadata(&path).ok()?.len();
        let mut computed = self.computed.lock().ok()?;
        if let Some(etag) = computed.get(&(path.clone(), size)) {
            return Some(etag.clone());
        }
        let etag = hex::encode(<md5::Md5 as md5::Digest>::digest(
            std::fs::read(&path).ok()?,
        ));
        computed.insert((path, size), etag.clone());
        Some(etag)
    }
}

forward_to_fs! {
    create_bucket: CreateBucketInput => CreateBucketOutput,
    copy_object: CopyObjectInput => CopyObjectOutput,
    delete_bucket: DeleteBucketInput => DeleteBucketOutput,
    delete_object: DeleteObjectInput => DeleteObjectOutput,
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    get_object: GetObjectInput => GetObjectOutput,
    head_bucket: HeadBucketInput => HeadBucketOutput,
    head_object: HeadObjectInput => HeadObjectOutput,
    list_buckets: ListBucketsInput => ListBucketsOutput,
    list_objects: ListObjectsInput => ListObjectsOutput,
    put_object: PutObjectInput => PutObjectOutput,
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    upload_part: UploadPartInput => UploadPartOutput,
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
    list_parts: ListPartsInput => ListPartsOutput,
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;

    // s3s-fs walks the whole bucket again for every page of a listing (with an async file
    // operation per entry), so listing N keys costs N²/1000. S3 keeps an index; here a listing
    // without a delimiter walks only the prefix's directory, once, at its first page, and its
    // later pages are served from that walk, as S3 pages through its index.
    async fn list_objects_v2(
        &self,
        req: s3s::S3Request<s3s::dto::ListObjectsV2Input>,
    ) -> S3Result<s3s::S3Response<s3s::dto::ListObjectsV2Output>> {
        let bucket = req.input.bucket.clone();
        let page_size = usize::try_from(req.input.max_keys.unwrap_or(1000).clamp(1, 1000))
            .unwrap_or(1000);
        if req.input.delimiter.is_some() {
            let mut response = self.fs.list_objects_v2(req).await?;
            for object in response.output.contents.iter_mut().flatten() {
                self.add_etag(&bucket, object);
            }
            return Ok(response);
        }
        let token = req.input.continuation_token.clone();
        let listing = match &token {
            Some(token) => self
                .listings
                .lock()
                .ok()
                .and_then(|mut listings| listings.remove(token))
                .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token is not valid"))?,
            None => {
                let input = req.input;
                let root = self.root.join(&bucket);
                if !root.is_dir() {
                    return Err(s3_error!(NoSuchBucket));
                }
                let prefix = input.prefix.clone().unwrap_or_default();
                let after = input.start_after.clone().unwrap_or_default();
                let mut objects = tokio::task::spawn_blocking(move || walk(&root, &prefix))
                    .await
                    .map_err(|e| s3_error!(InternalError, "listing failed: {e}"))?
                    .map_err(|e| s3_error!(InternalError, "listing failed: {e}"))?;
                objects.retain(|o| o.key.as_deref().unwrap_or("") > after.as_str());
                for object in &mut objects {
                    self.add_etag(&bucket, object);
                }
                let output = s3s::dto::ListObjectsV2Output {
                    name: Some(bucket.clone()),
                    prefix: input.prefix,
                    start_after: input.start_after,
                    ..Default::default()
                };
                Listing {
                    output,
                    objects: std::sync::Arc::new(objects),
                    offset: 0,
                }
            }
        };
        let end = (listing.offset + page_size).min(listing.objects.len());
        let page = listing.objects[listing.offset..end].to_vec();
        let mut output = listing.output.clone();
        output.key_count = Some(i32::try_from(page.len()).unwrap_or(i32::MAX));
        output.max_keys = Some(i32::try_from(page_size).unwrap_or(1000));
        output.contents = Some(page);
        output.continuation_token = token;
        output.is_truncated = Some(end < listing.objects.len());
        output.next_continuation_token = None;
        if end < listing.objects.len() {
            let next = format!("page-{}", hex::encode(rand::random::<[u8; 8]>()));
            output.next_continuation_token = Some(next.clone());
            if let Ok(mut listings) = self.listings.lock() {
                listings.insert(next, Listing { offset: end, ..listing });
            }
        }
        Ok(s3s::S3Response::new(output))
    }
}

/// A request as the server saw it: method, path, whether the query carried a SigV4
/// signature, and the `User-Agent`.
#[derive(Debug, Clone)]
#[allow(dead_code)] // read by the tests, not by the example binary
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub presigned: bool,
    pub user_agent: String,
}

type RequestLog = std::sync::Arc<std::sync::Mutex<Vec<SeenRequest>>>;

/// Milliseconds each UploadPart waits before it is handled, per server (0: none).
type PartDelay = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// A running server; stops when dropped or [`S3Server::stop`]ped.
pub struct S3Server {
    pub endpoint: String,
    seen: RequestLog,
    part_delay: PartDelay,
    addr: SocketAddr,
    root: PathBuf,
    task: JoinHandle<()>,
    /// While stopped, the port stays bound but not listening: connections are refused, and no
    /// other test's server can take the port and answer in its place.
    reserved: Option<TcpSocket>,
}

impl S3Server {
    /// Starts a server on `listener` keeping its data under `root`.
    pub fn start(root: PathBuf, listener: TcpListener) -> std::io::Result<Self> {
        Self::start_logging(root, listener, RequestLog::default(), PartDelay::default())
    }

    fn start_logging(
        root: PathBuf,
        listener: TcpListener,
        seen: RequestLog,
        part_delay: PartDelay,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        let log = seen.clone();
        let delay = part_delay.clone();
        let fs = s3s_fs::FileSystem::new(root.clone())
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut builder = S3ServiceBuilder::new(ListedETags {
            fs,
            root: root.clone(),
            computed: std::sync::Mutex::default(),
            listings: std::sync::Mutex::default(),
        });
        let mut auth = SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY);
        auth.register(READ_ONLY_ACCESS_KEY.into(), READ_ONLY_SECRET_KEY.into());
        builder.set_auth(auth);
        builder.set_access(PublicReadExceptPrivate);
        let service = builder.build();
        let addr = listener.local_addr()?;

        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                // As S3 does: without it, small responses wait ~40 ms on delayed ACKs.
                let _ = socket.set_nodelay(true);
                let service = service.clone();
                let log = log.clone();
                let delay = delay.clone();
                let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let service = service.clone();
                    let log = log.clone();
                    let delay = delay.load(std::sync::atomic::Ordering::Relaxed);
                    async move {
                        let is_part = req.method() == hyper::Method::PUT
                            && req.uri().query().is_some_and(|q| q.contains("partNumber="));
                        if is_part && delay > 0 {
                            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                        }
                        if let Ok(mut log) = log.lock() {
                            log.push(SeenRequest {
                                method: req.method().to_string(),
                                path: req.uri().path().to_owned(),
                                presigned: req
                                    .uri()
                                    .query()
                                    .is_some_and(|q| q.contains("X-Amz-Signature=")),
                                user_agent: req
                                    .headers()
                                    .get(hyper::header::USER_AGENT)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned(),
                            });
                        }
                        let origin = req.headers().get(hyper::header::ORIGIN).cloned();
                        if let Some(origin) = &origin
                            && req.method() == hyper::Method::OPTIONS
                        {
                            return Ok(cors_preflight(origin));
                        }
                        let latency = LATENCY_MS.load(std::sync::atomic::Ordering::Relaxed);
                        if latency > 0 {
                            tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
                        }
                        if LOG_REQUESTS.load(std::sync::atomic::Ordering::Relaxed) {
                            eprintln!("{} {}", req.method(), req.uri().path());
                        }
                        let overrides = response_overrides(&req);
                        let is_get = req.method() == hyper::Method::GET;
                        let mut response = service.call(req.map(s3s::Body::from)).await?;
                        if is_get && response.status().is_success() {
                            for (name, value) in overrides {
                                response.headers_mut().insert(name, value);
                            }
                        }
                        if let Some(origin) = origin {
                            let headers = response.headers_mut();
                            headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                            headers.insert(
                                hyper::header::VARY,
                                hyper::header::HeaderValue::from_static("Origin"),
                            );
                        }
                        Ok::<_, s3s::HttpError>(response)
                    }
                });
                connections.spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), handler)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            endpoint: format!("http://{addr}"),
            seen,
            part_delay,
            addr,
            root,
            task,
            reserved: None,
        })
    }

    /// Stops accepting and drops every open connection, as a crashed server would; the port
    /// then refuses connections until [`S3Server::restart`].
    pub async fn stop(&mut self) -> std::io::Result<()> {
        self.task.abort();
        // Wait until the task, and with it the listener, is gone before taking the port.
        let _ = (&mut self.task).await;
        let socket = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(self.addr)?;
        self.reserved = Some(socket);
        Ok(())
    }

    /// Starts again on the same address and data, as after a restart.
    #[allow(dead_code)] // used by the tests, not by the example binary
    pub async fn restart(&mut self) -> std::io::Result<()> {
        if self.reserved.is_none() {
            self.stop().await?;
        }
        let socket = self
            .reserved
            .take()
            .expect("stopped servers keep their port");
        *self = Self::start_logging(
            self.root.clone(),
            socket.listen(1024)?,
            self.seen.clone(),
            self.part_delay.clone(),
        )?;
        Ok(())
    }

    /// Makes every UploadPart wait `delay` before it is handled, as a slow store would.
    #[allow(dead_code)] // used by the tests, not by the example binary
    pub fn delay_upload_parts(&self, delay: std::time::Duration) {
        self.part_delay.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Multipart uploads begun and neither completed nor aborted: s3s-fs keeps each one's
    /// parts and metadata as files named `.upload_id-…` and `….upload-…` under its root.
    #[allow(dead_code)] // used by the tests, not by the example binary
    pub fn unfinished_multipart_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &std::path::Path, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(".upload_id-") || n.contains(".upload-"))
                {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.root, &mut found);
        found
    }

    /// Every request received so far, across restarts.
    #[allow(dead_code)] // used by the tests, not by the example binary
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The answer to a browser's CORS preflight, as a bucket whose rule admits every origin.
fn cors_preflight(origin: &hyper::header::HeaderValue) -> s3s::HttpResponse {
    let mut response = s3s::HttpResponse::new(s3s::Body::empty());
    let headers = response.headers_mut();
    headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
        hyper::header::HeaderValue::from_static("GET, HEAD, PUT, POST"),
    );
    headers.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
        hyper::header::HeaderValue::from_static("*"),
    );
    headers.insert(
        hyper::header::ACCESS_CONTROL_MAX_AGE,
        hyper::header::HeaderValue::from_static("3000"),
    );
    headers.insert(
        hyper::header::VARY,
        hyper::header::HeaderValue::from_static("Origin"),
    );
    response
}

fn response_overrides(
    req: &hyper::Request<hyper::body::Incoming>,
) -> Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)> {
    let Some(query) = req.uri().query() else {
        return Vec::new();
    };
    url::form_urlencoded::parse(query.as_bytes())
        .filter_map(|(name, value)| {
            let header = match &*name {
                "response-content-disposition" => hyper::header::CONTENT_DISPOSITION,
                "response-content-type" => hyper::header::CONTENT_TYPE,
                "response-cache-control" => hyper::header::CACHE_CONTROL,
                _ => return None,
            };
            Some((header, hyper::header::HeaderValue::from_str(&value).ok()?))
        })
        .collect()
}
