//! `rust-backend [ADDRESS]`: serves the todo list on ADDRESS, else `$MODPROXY_LISTEN`, else
//! 127.0.0.1:21230, until Ctrl-C or SIGTERM.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// The address in conf/default.toml's example entry for this backend.
const DEFAULT_LISTEN: &str = "127.0.0.1:21230";

/// The listen address by the convention every example backend follows: the first argument, else the
/// environment, else the default.
fn listen_addr(mut args: impl Iterator<Item = String>, env: Option<String>) -> String {
    let given = |addr: &String| !addr.trim().is_empty();
    args.next()
        .filter(given)
        .or_else(|| env.filter(given))
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let addr = listen_addr(std::env::args().skip(1), std::env::var("MODPROXY_LISTEN").ok());
    let server = modproxy_sdk::Server::bind(&addr)
        .await
        .with_context(|| format!("rust-backend: cannot listen on {addr}"))?;
    tracing::info!(addr = %server.local_addr()?, "todo backend ready");
    server.serve(rust_backend::router()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter().map(|s| s.to_string()).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn argument_then_environment_then_default() {
        let env = Some("127.0.0.1:1".to_owned());
        assert_eq!(listen_addr(args(&["127.0.0.1:2"]), env.clone()), "127.0.0.1:2");
        assert_eq!(listen_addr(args(&[]), env), "127.0.0.1:1");
        assert_eq!(listen_addr(args(&[]), None), DEFAULT_LISTEN);
        assert_eq!(listen_addr(args(&[]), Some(String::new())), DEFAULT_LISTEN);
        assert_eq!(listen_addr(args(&[""]), Some("127.0.0.1:1".into())), "127.0.0.1:1");
    }
}
