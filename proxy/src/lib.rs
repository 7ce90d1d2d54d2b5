//! Module Proxy: an HTTP server that, per URL module, serves static sites, reverse-proxies HTTP, or turns
//! a `POST` of JSON into a length-line frame to a TCP backend.

pub mod access_log;
pub mod activity;
pub mod app;
pub mod balancer;
pub mod body;
pub mod body_budget;
pub mod config;
pub mod connection_hold;
pub mod error_response;
pub mod frame_request;
pub mod head_shaping;
pub mod home;
pub mod http_forward;
pub mod lanes;
pub mod log_text;
pub mod logging;
pub mod metrics;
pub mod module_policy;
pub mod pid_file;
pub mod raw_frames;
pub mod reload;
pub mod request_body;
pub mod request_context;
pub mod routing;
pub mod scaffold;
pub mod send_timeout;
pub mod server;
pub mod socket_forward;
pub mod static_site;
pub mod stream_forward;
pub mod summary;
pub mod url_path;
