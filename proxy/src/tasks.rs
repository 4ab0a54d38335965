//! The proxy's background tasks and its shutdown signal.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::watch;
use tokio::task::JoinSet;

/// Every task the proxy runs (listeners, sessions, followers, the admin
/// listener), and the signal that tells them to stop.
#[derive(Debug)]
pub(crate) struct Tasks {
    /// `true` once shutdown began: listeners stop, sessions drain.
    shutdown: watch::Sender<bool>,
    set: Mutex<JoinSet<()>>,
}

impl Tasks {
    pub(crate) fn new() -> Self {
        Self {
            shutdown: watch::channel(false).0,
            set: Mutex::new(JoinSet::new()),
        }
    }

    /// Runs `fut` among the proxy's tasks (shutdown waits for it).
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = self.set.lock().unwrap_or_else(|p| p.into_inner());
        // Reap finished tasks so the set does not grow with every connection.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut);
    }

    /// The shutdown signal: `true` once the proxy stops.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tells every task to stop.
    pub(crate) fn stop(&self) {
        self.shutdown.send_replace(true);
    }

    /// The tasks still running, for the caller to wait on.
    pub(crate) fn take(&self) -> JoinSet<()> {
        std::mem::take(&mut *self.set.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Resolves once `shutdown` says `true`, including when it already did
/// before this receiver was made (a task spawned just as the proxy stops
/// would otherwise wait for a change that already happened).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
