//! A TCP forwarder standing between the app and a real server (PostgreSQL), so a test can take
//! that server away from one app and give it back (an outage, a restart) without touching the
//! server every other test shares; or black-hole it (nothing forwarded, nothing closed, as
//! after a NAT dropped its mapping or a server vanished mid-statement).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

pub struct TcpProxy {
    pub addr: SocketAddr,
    target: SocketAddr,
    /// Connections opened in a generation below this forward nothing (see
    /// [`TcpProxy::freeze`]); each connection watches it with the generation it was opened in.
    frozen: tokio::sync::watch::Sender<u64>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: Option<JoinHandle<()>>,
    /// While stopped, the port stays bound but not listening: connections are refused, and no
    /// other test can take the port.
    reserved: Option<TcpSocket>,
}

impl TcpProxy {
    /// Forwards a fresh local port to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frozen, _) = tokio::sync::watch::channel(0);
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = forward(listener, target, frozen.clone(), generation.clone());
        Self {
            addr,
            target,
            frozen,
            generation,
            task: Some(task),
            reserved: None,
        }
    }

    /// A proxy that starts stopped: its port refuses connections until [`TcpProxy::resume`].
    pub async fn stopped(target: SocketAddr) -> Self {
        let mut proxy = Self::start(target).await;
        proxy.stop().await;
        proxy
    }

    /// Cuts every open connection and refuses new ones, as a server that went down.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.reserved = Some(reserve(self.addr));
    }

    /// Forwards again, on the same port.
    pub fn resume(&mut self) {
        let socket = self.reserved.take().expect("a stopped proxy");
        let listener = socket.listen(128).unwrap();
        self.task = Some(forward(
            listener,
            self.target,
            self.frozen.clone(),
            self.generation.clone(),
        ));
    }

    /// Stops forwarding on every connection, open now or opened until [`TcpProxy::thaw`],
    /// without closing any: what is sent on them waits in the buffers, for ever.
    pub fn freeze(&self) {
        self.frozen.send_replace(u64::MAX);
    }

    /// Connections opened from now on flow; those of the freeze stay silent for good, as a
    /// NAT's dropped mappings do.
    pub fn thaw(&self) {
        let next = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        self.frozen.send_replace(next);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A fresh PostgreSQL database (the suite's server) reached through a proxy of its own: the
/// proxy, and the database's URL through it.
pub async fn proxied_postgres_database() -> (TcpProxy, String) {
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let direct = crate::helpers::fresh_postgres_database().await;
    let mut url = url::Url::parse(&direct).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    (proxy, url.to_string())
}

/// Binds `addr` without listening: connections to it are refused, and no other test can take
/// the port until the socket listens again.
pub fn reserve(addr: SocketAddr) -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket
}

fn forward(
    listener: TcpListener,
    target: SocketAddr,
    frozen: tokio::sync::watch::Sender<u64>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Dropping the set (when the task is aborted) drops every forwarded connection.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                continue;
            };
            let born = generation.load(std::sync::atomic::Ordering::SeqCst);
            let frozen = frozen.subscribe();
            connections.spawn(async move {
                if let Ok(outbound) = tokio::net::TcpStream::connect(target).await {
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::join!(
                        pump(in_read, out_write, frozen.clone(), born),
                        pump(out_read, in_write, frozen, born),
                    );
                }
            });
            while connections.try_join_next().is_some() {}
        }
    })
}

/// Copies `from` to `to`, holding each chunk while connections of generation `born` are
/// frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<u64>,
    born: u64,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen
            .wait_for(|dead_below| born >= *dead_below)
            .await
            .is_err()
        {
            break;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
