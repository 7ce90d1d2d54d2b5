//! `NativeBackend`: a [`Router`] of JavaScript handlers and the core's [`Server`] that answers with it.
//!
//! Lifecycle: register methods, `listen` once, `close` once. While the server runs, the promise of
//! `stopped()` is pending, and a pending native promise keeps Node's event loop alive — that is how a
//! listening backend keeps its process up although every handler is a weak threadsafe function. When the
//! server has finished its in-flight calls the promise resolves and the process may exit on its own.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use modproxy_sdk::{MethodDescription, Router, Server};
use napi::Env;
use napi_derive::napi;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::frames::max_frame_or_default;
use crate::handler::{HandlerFn, JsHandler};
use crate::registration::RegisterOptions;

/// The address a backend is bound to, shaped like Node's `server.address()`.
#[napi(object)]
pub struct BoundAddress {
    /// The IP address, e.g. `127.0.0.1`.
    pub address: String,
    /// `IPv4` or `IPv6`.
    pub family: String,
    /// The port (useful after listening on port 0).
    pub port: u32,
}

impl From<SocketAddr> for BoundAddress {
    fn from(addr: SocketAddr) -> Self {
        BoundAddress {
            address: addr.ip().to_string(),
            family: if addr.is_ipv4() { "IPv4" } else { "IPv6" }.to_owned(),
            port: u32::from(addr.port()),
        }
    }
}

/// Where a backend is in its one-way lifecycle.
enum Phase {
    /// Methods may still be registered.
    Idle,
    /// `listen` is binding.
    Binding,
    /// Serving until `stop` is cancelled (calls in flight finish) or `now` is (they are dropped); `done`
    /// turns `true` when the server has returned.
    Serving {
        addr: SocketAddr,
        stop: CancellationToken,
        now: CancellationToken,
        done: watch::Receiver<bool>,
    },
    /// Closed before it ever served, or binding failed.
    Closed,
}

/// The native half of `Backend`; `index.js` wraps it.
#[napi]
pub struct NativeBackend {
    router: Arc<Mutex<Router>>,
    phase: Arc<Mutex<Phase>>,
}

impl NativeBackend {
    fn unattached() -> Self {
        NativeBackend {
            router: Arc::new(Mutex::new(Router::new())),
            phase: Arc::new(Mutex::new(Phase::Idle)),
        }
    }
}

#[napi]
impl NativeBackend {
    /// A backend with no methods (it still answers `_ping`).
    #[napi(constructor)]
    pub fn new(env: Env) -> napi::Result<Self> {
        let backend = NativeBackend::unattached();
        // The runtime outlives a worker thread's environment: stop serving when ours goes away, rather
        // than keep a listener whose every call fails.
        env.add_env_cleanup_hook(Arc::downgrade(&backend.phase), |phase| {
            if let Some(phase) = phase.upgrade() {
                if let Phase::Serving { ref stop, .. } = *lock(&phase) {
                    stop.cancel();
                }
            }
        })?;
        Ok(backend)
    }

    /// Registers `handler` under `name`. It receives a batch of calls, the `data` and `head` of each as
    /// JSON text, and returns one result per call, in order: the reply as JSON text, an error `Outcome`, or
    /// a promise of an `Outcome`; it must never throw or reject. `description` is what `_describe` says
    /// about it, as JSON text `{"doc", "data", "result"}`.
    #[napi]
    pub fn method(
        &self,
        name: String,
        #[napi(ts_arg_type = "(datas: string[], heads: string[]) => Array<string | Outcome | Promise<Outcome>>")]
        handler: HandlerFn,
        description: Option<String>,
    ) -> napi::Result<()> {
        if !matches!(*lock(&self.phase), Phase::Idle) {
            return Err(napi::Error::from_reason(format!(
                "cannot register '{name}': register every method before listen()"
            )));
        }
        // The core's naming rules (not empty, no leading `_`, each name once); JavaScript gets an Error.
        let handler = JsHandler::new(name.clone(), handler);
        // What `_describe` says about it: `{"doc", "data", "result"}` as JSON text, absent when untyped.
        let description = match description {
            Some(text) => serde_json::from_str::<MethodDescription>(&text)
                .map_err(|e| napi::Error::from_reason(format!("method '{name}': bad description: {e}")))?,
            None => MethodDescription::default(),
        };
        let mut router = lock(&self.router);
        router
            .try_insert(name.clone(), Arc::new(handler))
            .map_err(|refused| napi::Error::from_reason(refused.to_string()))?;
        router.set_description(&name, description);
        Ok(())
    }

    /// Binds `addr` (`host:port`) and starts serving; resolves once bound, rejects if binding fails. With
    /// `register`, the server registers in etcd while it serves.
    #[napi]
    pub async fn listen(
        &self,
        addr: String,
        max_frame: Option<i64>,
        register: Option<RegisterOptions>,
    ) -> napi::Result<BoundAddress> {
        let registration = register.map(modproxy_sdk::Registration::try_from).transpose()?;
        {
            let mut phase = lock(&self.phase);
            match *phase {
                Phase::Idle => *phase = Phase::Binding,
                _ => {
                    return Err(napi::Error::from_reason(
                        "listen() was already called: a Backend listens once",
                    ))
                }
            }
        }
        let bound = bind(&addr, max_frame).await.map(|server| match registration {
            Some(registration) => server.register(registration),
            None => server,
        });
        let mut phase = lock(&self.phase);
        let server = match bound {
            Ok(server) => server,
            Err(error) => {
                *phase = Phase::Closed;
                return Err(error);
            }
        };
        let local = server
            .local_addr()
            .map_err(|e| napi::Error::from_reason(format!("cannot read the bound address: {e}")))?;
        let router = lock(&self.router).clone();
        let (stop, now) = (CancellationToken::new(), CancellationToken::new());
        let (done_tx, done) = watch::channel(false);
        let (shutdown, at_once) = (stop.clone().cancelled_owned(), now.clone().cancelled_owned());
        napi::bindgen_prelude::spawn(async move {
            if let Err(error) = server.serve_until(router, shutdown, at_once).await {
                eprintln!("modproxy-sdk: backend on {local} stopped: {error}");
            }
            done_tx.send_replace(true);
        });
        *phase = Phase::Serving {
            addr: local,
            stop,
            now,
            done,
        };
        Ok(local.into())
    }

    /// The bound address, or `null` when not serving.
    #[napi]
    pub fn address(&self) -> Option<BoundAddress> {
        match *lock(&self.phase) {
            Phase::Serving { addr, ref done, .. } if !*done.borrow() => Some(addr.into()),
            _ => None,
        }
    }

    /// Resolves when the server has stopped. Pending while serving, which keeps the process alive.
    #[napi]
    pub async fn stopped(&self) -> napi::Result<()> {
        let done = match *lock(&self.phase) {
            Phase::Serving { ref done, .. } => done.clone(),
            _ => return Ok(()),
        };
        wait_done(done).await;
        Ok(())
    }

    /// Stops accepting connections, lets in-flight calls finish, and resolves when the server has
    /// stopped. Called again while those calls finish, it stops at once (a second Ctrl-C). Before
    /// `listen`, or once stopped, it is harmless.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        let done = {
            let mut phase = lock(&self.phase);
            match *phase {
                Phase::Serving {
                    ref stop,
                    ref now,
                    ref done,
                    ..
                } => {
                    if stop.is_cancelled() {
                        now.cancel();
                    }
                    stop.cancel();
                    done.clone()
                }
                Phase::Idle => {
                    *phase = Phase::Closed;
                    return Ok(());
                }
                Phase::Binding | Phase::Closed => return Ok(()),
            }
        };
        wait_done(done).await;
        Ok(())
    }
}

async fn bind(addr: &str, max_frame: Option<i64>) -> napi::Result<Server> {
    let max_frame = max_frame_or_default(max_frame)?;
    let server = Server::bind(addr)
        .await
        .map_err(|e| napi::Error::from_reason(format!("cannot listen on {addr}: {e}")))?;
    Ok(server.max_frame(max_frame))
}

async fn wait_done(mut done: watch::Receiver<bool>) {
    // An error means the serving task is gone, which also means it has stopped.
    let _ = done.wait_for(|stopped| *stopped).await;
}

/// Locks a mutex, ignoring poisoning: the guarded state stays consistent across every early return.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
