//! After a `101 Switching Protocols`, the client's connection and the upstream's are spliced together
//! byte for byte until either side closes, no byte moves for `[server] websocket_idle_timeout`, the
//! server stops, or a reload retires the module it was opened through. The splice keeps the client connection's hold, so it counts against `max_connections`.

use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use crate::activity::{Activity, Touching};
use crate::connection_hold::ConnectionHold;

/// The idle bound of a splice whose client connection has no hold (not served by the listener).
const IDLE_WITHOUT_HOLD: Duration = Duration::from_secs(300);

/// Splices the two connections once both have switched protocols; runs until either closes, the splice
/// idles out, the server stops, or `retired` is cancelled.
pub async fn splice(
    module: String,
    node: String,
    client: OnUpgrade,
    upstream: OnUpgrade,
    hold: Option<ConnectionHold>,
    retired: CancellationToken,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::warn!(module, node, %error, "upgrade failed before the connections were joined");
            return;
        }
    };
    // Every byte either way passes the client's side: its traffic is the splice's.
    let activity = Arc::new(Activity::default());
    let mut client = Touching::new(TokioIo::new(client), Arc::clone(&activity));
    let mut upstream = TokioIo::new(upstream);
    let idle = hold.as_ref().map_or(IDLE_WITHOUT_HOLD, ConnectionHold::upgraded_idle);
    let stopping = async {
        match &hold {
            Some(hold) => hold.stopping().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
            Ok((up, down)) => tracing::debug!(module, node, up, down, "upgraded connection closed"),
            Err(error) => tracing::debug!(module, node, %error, "upgraded connection ended with an error"),
        },
        () = activity.idle_for(idle) => {
            tracing::debug!(module, node, idle_s = idle.as_secs_f64(), "upgraded connection idle; closed");
        }
        () = stopping => tracing::debug!(module, node, "upgraded connection closed: the server is stopping"),
        () = retired.cancelled() => {
            tracing::debug!(module, node, "upgraded connection closed: the configuration was reloaded");
        }
    }
    drop(hold);
}
