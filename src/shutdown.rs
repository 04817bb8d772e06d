//! Graceful shutdown: on SIGTERM or SIGINT the server stops accepting connections, tells
//! every WebSocket client to reconnect (close code [`RESTART_CLOSE_CODE`], reason
//! [`RESTART_CLOSE_REASON`]), lets in-flight requests finish (up to
//! [`SHUTDOWN_TIMEOUT`]), and exits. Every call transition is committed to the store before
//! it is acknowledged, so nothing is left to persist once the requests are done.

use std::time::Duration;

use actix_web::dev::ServerHandle;
use tokio::sync::watch;

/// The WebSocket close code sent to clients when the server shuts down: 1012, "Service
/// Restart" (RFC 6455 registry): the client should reconnect (with `?since=`) shortly.
pub const RESTART_CLOSE_CODE: u16 = 1012;

/// The close reason sent with [`RESTART_CLOSE_CODE`].
pub const RESTART_CLOSE_REASON: &str = "server restarting; reconnect";

/// How long in-flight requests may take to finish once shutdown starts.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// A shutdown flag shared by the server's parts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A flag that is not set.
    pub fn new() -> Self {
        Shutdown {
            tx: std::sync::Arc::new(watch::channel(false).0),
        }
    }

    /// Sets the flag: every waiter in [`Shutdown::wait`] wakes.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the flag is set.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the flag is set (at once if it already is). Cancel-safe.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|set| *set).await;
    }
}

/// Stops a running server gracefully.
#[derive(Debug, Clone)]
pub struct Stopper {
    server: ServerHandle,
    shutdown: Shutdown,
}

impl Stopper {
    /// A stopper for this server and the flag its WebSocket sessions watch.
    pub fn new(server: ServerHandle, shutdown: Shutdown) -> Self {
        Stopper { server, shutdown }
    }

    /// Stops accepting, tells WebSocket clients to reconnect, waits for in-flight
    /// requests (at most [`SHUTDOWN_TIMEOUT`]), then stops the server.
    pub async fn stop(&self) {
        self.server.pause().await;
        self.shutdown.trigger();
        self.server.stop(true).await;
    }
}

/// Waits for SIGTERM or SIGINT; returns the signal's name.
pub async fn signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("ctrl-c")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_resolves_once_triggered_and_at_once_after() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "must wait until triggered");
        s.trigger();
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("woken by trigger")
            .unwrap();
        assert!(s.is_triggered());
        tokio::time::timeout(Duration::from_millis(100), s.wait())
            .await
            .expect("already triggered: resolves at once");
    }
}
