//! A TCP forwarder standing between the app and a real server (PostgreSQL), so a test can take
//! that server away from one app and give it back (an outage, a restart) without touching the
//! server every other test shares.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

pub struct TcpProxy {
    pub addr: SocketAddr,
    target: SocketAddr,
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
        Self {
            addr,
            target,
            task: Some(forward(listener, target)),
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
        self.task = Some(forward(listener, self.target));
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Binds `addr` without listening: connections to it are refused, and no other test can take
/// the port until the socket listens again.
pub fn reserve(addr: SocketAddr) -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket
}

fn forward(listener: TcpListener, target: SocketAddr) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Dropping the set (when the task is aborted) drops every forwarded connection.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
            while connections.try_join_next().is_some() {}
        }
    })
}
