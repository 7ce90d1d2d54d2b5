//! `listen(addr, { register })`: where a Node backend registers itself in etcd. The core registers
//! (`modproxy_sdk::registration`); this only converts the option object.

use std::time::Duration;

use napi_derive::napi;

/// `register` in `listen`'s options; see `index.d.ts`.
#[napi(object)]
pub struct RegisterOptions {
    /// The etcd cluster's client URLs (`http://host:port`).
    pub etcd: Vec<String>,
    /// The proxy module this backend serves; the prefix is `/modproxy/modules/<module>/` unless given.
    pub module: String,
    /// The address the proxy should connect to; by default the bound one.
    pub address: Option<String>,
    /// The etcd key prefix, ending in `/`.
    pub prefix: Option<String>,
    /// The lease's TTL in seconds (at least 1; default 10).
    pub ttl: Option<f64>,
}

impl TryFrom<RegisterOptions> for modproxy_sdk::Registration {
    type Error = napi::Error;

    fn try_from(options: RegisterOptions) -> napi::Result<Self> {
        let mut registration = modproxy_sdk::Registration::new(options.etcd, &options.module);
        if let Some(ttl) = options.ttl {
            if !(ttl >= 1.0 && ttl.is_finite()) {
                return Err(napi::Error::from_reason(format!(
                    "register.ttl must be at least 1 second, not {ttl}"
                )));
            }
            registration = registration.ttl(Duration::from_secs_f64(ttl));
        }
        if let Some(address) = options.address {
            registration = registration.advertise(address);
        }
        if let Some(prefix) = options.prefix {
            registration = registration.prefix(prefix);
        }
        Ok(registration)
    }
}
