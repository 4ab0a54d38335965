//! Accepting client connections: the connection limits (in all and per
//! client address), the TLS handshake
//! (a client certificate names the principal), certificate reloads, and
//! the listeners of broker nodes as routes start them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::auth::principal::{AuthMethod, Principal};
use crate::cluster::dial::BoxStream;
use crate::filter::Target;
use crate::net::routes::NewListener;
use crate::net::{session, Front};
use crate::tls::TlsServer;

/// Serves `listener` (for `target`) among the proxy's tasks.
pub(crate) fn spawn(front: &Arc<Front>, listener: TcpListener, target: Target) {
    front
        .tasks
        .spawn(accept_loop(front.clone(), listener, target));
}

/// Serves the node listeners the routes start, until shutdown.
pub(crate) async fn serve_new_listeners(
    front: Arc<Front>,
    mut listeners: mpsc::UnboundedReceiver<NewListener>,
) {
    let mut shutdown = front.tasks.stopping();
    loop {
        tokio::select! {
            l = listeners.recv() => match l {
                Some((listener, target)) => spawn(&front, listener, target),
                None => return,
            },
            _ = crate::tasks::stopped(&mut shutdown) => return,
        }
    }
}

async fn accept_loop(front: Arc<Front>, listener: TcpListener, target: Target) {
    let mut shutdown = front.tasks.stopping();
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    let Ok(permit) = front.connections.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, limit = front.limits.max_connections, "connection limit reached; closing new connection");
                        front.metrics.connection_refused("limit");
                        drop(sock);
                        continue;
                    };
                    let place = match &front.per_ip {
                        Some(per_ip) => match PerIp::admit(per_ip, peer.ip()) {
                            Some(place) => Some(place),
                            None => {
                                tracing::warn!(%peer, limit = per_ip.limit, "connection limit per address reached; closing new connection");
                                front.metrics.connection_refused("limit_per_ip");
                                drop(sock);
                                continue;
                            }
                        },
                        None => None,
                    };
                    let _ = sock.set_nodelay(true);
                    let f = front.clone();
                    front.tasks.spawn(async move {
                        match handshake(f.tls.as_deref(), sock, peer).await {
                            Some((stream, principal)) => session::run(f, stream, peer, target, principal).await,
                            None => f.metrics.connection_refused("tls"),
                        }
                        drop(place);
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = crate::tasks::stopped(&mut shutdown) => return,
        }
    }
}

/// Connections open per client IP address, against a limit.
#[derive(Debug)]
pub(crate) struct PerIp {
    pub limit: usize,
    open: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

/// A place taken by one connection from its address; given back on drop.
pub(crate) struct Place {
    of: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub(crate) fn new(limit: usize) -> Self {
        PerIp {
            limit,
            open: Default::default(),
        }
    }

    /// A place for a connection from `ip`, if that address has one left.
    pub(crate) fn admit(this: &Arc<PerIp>, ip: IpAddr) -> Option<Place> {
        let mut open = this.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= this.limit {
            return None;
        }
        *n += 1;
        Some(Place {
            of: this.clone(),
            ip,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.of.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// TLS handshake (when configured); a client certificate names the
/// principal. `None` when the handshake failed (logged).
async fn handshake(
    tls: Option<&TlsServer>,
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Option<(BoxStream, Option<Principal>)> {
    let Some(tls) = tls else {
        return Some((Box::new(sock), None));
    };
    let accepted = tokio::time::timeout(Duration::from_secs(10), tls.acceptor().accept(sock)).await;
    let stream = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::warn!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    let principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(crate::tls::certificate_principal)
        .map(|name| Principal {
            name,
            method: AuthMethod::Certificate,
            attributes: Default::default(),
        });
    if let Some(p) = &principal {
        tracing::info!(%peer, principal = %p.name, "client certificate accepted");
    }
    Some((Box::new(stream), principal))
}

/// Re-reads the server certificate when its files change.
pub(crate) async fn watch_certificates(
    tls: Arc<TlsServer>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(tls.reload_interval());
    loop {
        tokio::select! {
            _ = tick.tick() => match tls.reload_if_changed() {
                Ok(true) => tracing::info!("TLS certificate reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "new TLS certificate refused; keeping the old one"),
            },
            _ = crate::tasks::stopped(&mut shutdown) => return,
        }
    }
}
