//! The server loop: connections, their timeouts and limits, and the drain at shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;

use super::health;

/// How long a client may take to send a request's headers, and how long a kept-alive
/// connection may sit idle before its next request (hyper times both from the moment it
/// starts waiting for a request head). A client that sends headers a byte a second is cut off
/// here instead of holding a connection for ever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How a server stops, and how many connections it holds meanwhile: see [`serve`].
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Set at the signal; `/readyz` then answers 503 and answers close their connections.
    pub draining: health::Draining,
    /// How long the listener stays open after the signal (`SHUTDOWN_DRAIN_SECS`).
    pub drain: Duration,
    /// How long in-flight requests may then finish (`SHUTDOWN_GRACE_SECS`).
    pub grace: Duration,
    /// The most connections open at once (`MAX_CONNECTIONS`); more wait in the backlog.
    pub max_connections: usize,
}

/// How long a connection may go without a request before it is closed (gracefully: a
/// request still running finishes). This is what ends an HTTP/2 connection, which a client
/// can keep open for ever by answering pings. An HTTP/1 connection that has served a request
/// is left to hyper's header-read timeout, which starts once its answer is written: closing it
/// from here, timed from when the handler returned, would race a client reusing it.
pub const CONNECTION_IDLE: Duration = HEADER_READ_TIMEOUT;

/// What one connection is doing: its requests in flight, when it last started or ended one,
/// and whether it has served one over HTTP/1.
#[derive(Debug)]
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    since: std::sync::Mutex<tokio::time::Instant>,
    http1: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            since: std::sync::Mutex::new(tokio::time::Instant::now()),
            http1: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Notes the protocol of a request the connection carries.
    fn saw(&self, version: axum::http::Version) {
        if version < axum::http::Version::HTTP_2 {
            self.http1.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn touch(&self) {
        if let Ok(mut since) = self.since.lock() {
            *since = tokio::time::Instant::now();
        }
    }

    /// When the connection will have been idle for [`CONNECTION_IDLE`], or `None` while a
    /// request runs or once it has served HTTP/1 (see [`CONNECTION_IDLE`]).
    fn idle_at(&self) -> Option<tokio::time::Instant> {
        if self.in_flight.load(std::sync::atomic::Ordering::Acquire) > 0
            || self.http1.load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        self.since.lock().ok().map(|since| *since + CONNECTION_IDLE)
    }
}

/// Counts a request in flight on its connection until its answer is ready.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.touch();
        activity
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` until SIGTERM or SIGINT. Then it drains: for `drain` it goes on
/// accepting while `/readyz` answers 503 (a load balancer's health checks take the instance out
/// of rotation, so no request is sent to a closed port); then it stops accepting, lets
/// in-flight requests finish for up to `grace`, and returns; whatever still runs is dropped
/// with the runtime (temporary files are removed as it is).
///
/// The accept loop is hyper-util's rather than `axum::serve`, which offers no header-read
/// timeout: every connection gets [`HEADER_READ_TIMEOUT`], [`CONNECTION_IDLE`] and
/// `TCP_NODELAY`, and at most `max_connections` are open at once: past that, a new one waits
/// in the kernel's backlog until another closes, so a flood of connections costs the
/// process no memory.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let Shutdown {
        draining,
        drain,
        grace,
        max_connections,
    } = shutdown;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    // Cancelled when the listener closes: every connection then finishes what it runs and ends.
    let stopping = tokio_util::sync::CancellationToken::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    // Held so that what is still running when the grace period ends can be stopped here, while
    // the runtime still runs the clean-up it starts (see `storage::cleanup_tasks`).
    let mut connections = tokio::task::JoinSet::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    // Armed at the signal: when the drain is over.
    let drained = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drained);
    loop {
        while connections.try_join_next().is_some() {}
        let next = async {
            // A place first, then the connection: past the limit, clients wait in the backlog.
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            (listener.accept().await, permit)
        };
        let ((tcp, peer), permit) = tokio::select! {
            () = &mut signal, if !draining.is_on() => {
                draining.start();
                if drain.is_zero() {
                    break;
                }
                tracing::info!(drain_secs = drain.as_secs(), "draining: /readyz answers 503 until the listener closes");
                drained.as_mut().reset(tokio::time::Instant::now() + drain);
                continue;
            }
            () = &mut drained, if draining.is_on() => break,
            (accepted, permit) = next => match accepted {
                Ok(accepted) => (accepted, permit),
                Err(err) => {
                    // Out of file descriptors and the like: wait a little, as axum::serve does.
                    tracing::warn!(error = %err, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small answers (redirects, health checks) leave at once, not after a delayed ACK.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        let activity = Activity::new();
        let service = {
            let (activity, seen) = (activity.clone(), activity.clone());
            app.clone()
                .map_request(
                    move |mut request: axum::http::Request<hyper::body::Incoming>| {
                        seen.saw(request.version());
                        request.extensions_mut().insert(ConnectInfo(peer));
                        request
                    },
                )
                .map_future(move |answer| {
                    let counted = InFlight::start(&activity);
                    async move {
                        let answer = answer.await;
                        drop(counted);
                        answer
                    }
                })
        };
        let builder = builder.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            let _permit = permit;
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(tcp),
                TowerToHyperService::new(service),
            );
            tokio::pin!(connection);
            let mut closing = false;
            loop {
                let idle_at = activity
                    .idle_at()
                    .unwrap_or_else(|| tokio::time::Instant::now() + CONNECTION_IDLE);
                tokio::select! {
                    ended = connection.as_mut() => {
                        if let Err(err) = ended {
                            tracing::debug!(error = %err, "connection ended with an error");
                        }
                        return;
                    }
                    () = stopping.cancelled(), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    () = tokio::time::sleep_until(idle_at), if !closing => {
                        if activity.idle_at().is_some_and(|at| at <= tokio::time::Instant::now()) {
                            connection.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    stopping.cancel();
    let finished = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, finished).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still running when SHUTDOWN_GRACE_SECS ran out; stopping them"
        );
        connections.shutdown().await;
    }
    finish_cleanup().await;
    Ok(())
}

/// Waits (5 s at most) for the clean-up that stopped requests started: aborting unfinished
/// S3 multipart uploads, so none is left behind by a shutdown.
async fn finish_cleanup() {
    let tasks = crate::storage::cleanup_tasks();
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("clean-up of stopped uploads did not finish within 5 s");
    }
    tasks.reopen();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received, draining connections");
}
