//! After a `101 Switching Protocols`, the client's connection and the upstream's are spliced together
//! byte for byte until either side closes. No timeout applies: a WebSocket may sit idle for hours.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Splices the two connections once both have switched protocols; runs until either closes.
pub async fn splice(module: String, node: String, client: OnUpgrade, upstream: OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::warn!(module, node, %error, "upgrade failed before the connections were joined");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(module, node, up, down, "upgraded connection closed"),
        Err(error) => tracing::debug!(module, node, %error, "upgraded connection ended with an error"),
    }
}
