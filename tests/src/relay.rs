//! A TCP fault relay for the fault-injection tests: it sits between a
//! client (the proxy, a Kafka client) and a server (the broker) and, on
//! command, stalls the connections open now, delays every chunk, or resets
//! every connection.
//!
//! ```text
//!  proxy ──▶ FaultRelay (127.0.0.1:0) ──▶ broker
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    /// Stall switches of the connections open: `true` stops both
    /// directions of that connection.
    connections: Mutex<Vec<(watch::Sender<bool>, tokio::task::AbortHandle)>>,
    delay_ms: AtomicU64,
    accepted: AtomicUsize,
}

/// The relay, serving until dropped.
#[derive(Debug)]
pub struct FaultRelay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultRelay {
    /// Relays `127.0.0.1:0` to `target`.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            connections: Mutex::new(Vec::new()),
            delay_ms: AtomicU64::new(0),
            accepted: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                s.accepted.fetch_add(1, Ordering::Relaxed);
                let (stall, stalled) = watch::channel(false);
                let s2 = s.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(s2.target).await {
                        relay(client, server, stalled, s2).await;
                    }
                });
                if let Ok(mut c) = s.connections.lock() {
                    c.retain(|(_, h)| !h.is_finished());
                    c.push((stall, conn.abort_handle()));
                }
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Stops forwarding on every connection open now, both ways (their
    /// bytes wait in the socket buffers); new connections flow.
    pub fn stall_existing(&self) {
        if let Ok(c) = self.shared.connections.lock() {
            for (stall, _) in c.iter() {
                let _ = stall.send(true);
            }
        }
    }

    /// Forwards again on every connection.
    pub fn resume(&self) {
        if let Ok(c) = self.shared.connections.lock() {
            for (stall, _) in c.iter() {
                let _ = stall.send(false);
            }
        }
    }

    /// Delays every chunk forwarded from now on by `delay`.
    pub fn delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Drops every connection open now (both sockets closed at once, as a
    /// broker that dies would leave them).
    pub fn reset_all(&self) {
        if let Ok(mut c) = self.shared.connections.lock() {
            for (_, h) in c.drain(..) {
                h.abort();
            }
        }
    }
}

impl Drop for FaultRelay {
    fn drop(&mut self) {
        self.task.abort();
        self.reset_all();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    stalled: watch::Receiver<bool>,
    s: Arc<Shared>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, stalled.clone(), s.clone());
    let down = pump(sr, cw, stalled, s);
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
    s: Arc<Shared>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // A stalled connection reads nothing: its peer's writes fill the
        // socket buffers and then block, as with a hung server.
        while *stalled.borrow() {
            if stalled.changed().await.is_err() {
                return;
            }
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = stalled.changed() => continue,
        };
        let delay = s.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
