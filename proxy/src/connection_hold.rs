//! What a client connection holds while it is open (its `max_connections` slot, its place in the open
//! connections gauge, and shutdown's wait for it), shared with whatever outlives hyper's connection: an
//! upgraded WebSocket's splice. Released when the last holder is done, so a WebSocket counts against
//! `max_connections` and is waited for (and closed) on shutdown like any connection.
//!
//! The listener puts one in the extensions of every request with an `Upgrade` header; it is opaque here,
//! so roles need not know the listener's types.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A share of a client connection's hold, and the signal that the server is stopping.
#[derive(Clone)]
pub struct ConnectionHold {
    _held: Arc<dyn Any + Send + Sync>,
    stopping: CancellationToken,
    upgraded_idle: Duration,
}

impl std::fmt::Debug for ConnectionHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionHold").finish_non_exhaustive()
    }
}

impl ConnectionHold {
    /// Holds `held` (dropped with the last share) for a connection of a server that stops on
    /// `stopping`; once upgraded, the connection is closed after `upgraded_idle` without a byte.
    pub fn new(held: impl Any + Send + Sync, stopping: CancellationToken, upgraded_idle: Duration) -> Self {
        ConnectionHold {
            _held: Arc::new(held),
            stopping,
            upgraded_idle,
        }
    }

    /// How long an upgraded connection (a WebSocket) may move no byte before it is closed.
    pub fn upgraded_idle(&self) -> Duration {
        self.upgraded_idle
    }

    /// Completes when the server begins to stop.
    pub async fn stopping(&self) {
        self.stopping.cancelled().await
    }
}
