//! Accepting client connections: the connection limit, the TLS handshake
//! (a client certificate names the principal), certificate reloads, and
//! the listeners of broker nodes as routes start them.

use std::net::SocketAddr;
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
                    let _ = sock.set_nodelay(true);
                    let f = front.clone();
                    front.tasks.spawn(async move {
                        match handshake(f.tls.as_deref(), sock, peer).await {
                            Some((stream, principal)) => session::run(f, stream, peer, target, principal).await,
                            None => f.metrics.connection_refused("tls"),
                        }
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
