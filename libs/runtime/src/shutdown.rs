//! Shutdown signalling: one token per phase, triggered by SIGTERM/SIGINT or by a test.

use tokio_util::sync::CancellationToken;

/// A cloneable shutdown signal. Services take one in `serve` and stop intake when it fires;
/// later phases (consumers, pools) get their own, triggered once the phase before drained.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A signal that fires only when [`Shutdown::trigger`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    /// A signal that fires on SIGTERM or SIGINT (Ctrl-C). Must be called inside a runtime.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let name = wait_for_signal().await;
            tracing::info!(signal = name, "shutdown requested");
            trigger.trigger();
        });
        shutdown
    }

    /// Fires the signal; idempotent.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once the signal has fired.
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// A signal that fires with this one, and can also be fired on its own.
    pub fn child(&self) -> Self {
        Self {
            token: self.token.child_token(),
        }
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "cannot listen for signals; only Ctrl-C will stop");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}
