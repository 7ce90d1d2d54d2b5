//! `module_http`: reverse proxy to upstream HTTP servers. (Built by the reverse-proxy issue.)

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::balancer::{Balancer, Clock};
use crate::body::Body;
use crate::config::Upstream;
use crate::error_response::ErrorPages;

/// One HTTP module.
#[derive(Debug)]
pub struct HttpForward {
    balancer: Balancer,
}

impl HttpForward {
    /// The forwarder for module `name`.
    pub fn new(_name: &str, upstream: Upstream, clock: Arc<dyn Clock>) -> Self {
        HttpForward {
            balancer: Balancer::new(upstream.nodes.clone(), upstream.fail_timeout, clock),
        }
    }

    /// The module's balancer.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// Forwards one request.
    pub async fn handle(&self, _request: Request<Incoming>, _peer: SocketAddr, pages: &ErrorPages) -> Response<Body> {
        pages.page(StatusCode::NOT_IMPLEMENTED)
    }
}
