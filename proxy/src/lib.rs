//! Module Proxy: an HTTP server that, per URL module, serves static sites, reverse-proxies HTTP, or turns
//! a `POST` of JSON into a length-line frame to a TCP backend.

pub mod activity;
pub mod app;
pub mod balancer;
pub mod body;
pub mod config;
pub mod error_response;
pub mod head_shaping;
pub mod home;
pub mod http_forward;
pub mod lanes;
pub mod logging;
pub mod metrics;
pub mod module_policy;
pub mod raw_frames;
pub mod reload;
pub mod request_context;
pub mod routing;
pub mod scaffold;
pub mod server;
pub mod socket_forward;
pub mod static_site;
pub mod stream_forward;
pub mod summary;

/// The old path of [`socket_forward`], still named by `raw_frames` and `server`; goes once they use the new one.
pub use socket_forward as socket_gateway;
