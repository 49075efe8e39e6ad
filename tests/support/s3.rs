//! A real S3-compatible server for the tests and benchmarks: `s3s-fs` (strict SigV4 header and
//! presigned-URL checks, expiry, multipart) on a local port, data in a directory of its own.
//!
//! Two things are added in front of it, both as real S3 does them:
//! - a bucket policy: anonymous `GetObject`/`HeadObject` is allowed except under `private/`
//!   (the README's alternative to ACLs for public media);
//! - `response-content-disposition` / `response-content-type` overrides on signed GETs, which
//!   s3s-fs validates as part of the signature but does not apply to the response.

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

/// A running server; stops when dropped or [`S3Server::stop`]ped.
pub struct S3Server {
    pub endpoint: String,
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
        std::fs::create_dir_all(&root)?;
        let fs = s3s_fs::FileSystem::new(root.clone())
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut builder = S3ServiceBuilder::new(fs);
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
                let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let service = service.clone();
                    async move {
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
        *self = Self::start(self.root.clone(), socket.listen(1024)?)?;
        Ok(())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
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
