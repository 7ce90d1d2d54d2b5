//! New TLS connections per second, each carrying one `GET` with `Connection: close`: what row 10 asks
//! of wrk, on a client that costs less than the servers it measures.
//!
//! ```text
//! tlsload HOST:PORT --ca CA.pem [--path /1kb.bin] [--connections 64] [--seconds 10] [--warmup 2]
//! ```
//!
//! wrk spends 400–500 µs of its CPU per new TLS connection (OpenSSL), more than either server does, so
//! on a machine with one CPU for the client and one for the servers row 10 measured wrk. This client,
//! rustls on ring, resumes sessions as wrk does (TLS 1.3 tickets, the server's choice of suite) and does
//! nothing else per connection. It checks the servers' certificate against `--ca` (the bench's
//! `modproxy cert local` authority; both servers present the same certificate) as any client does. One
//! thread drives every connection. Prints the line `BENCH_JSON {...}` with the fields bench/wrk/load.lua
//! prints, and `resumed`, how many handshakes resumed a session; a connection that fails or a response
//! that is not a `200` counts as an error.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Set once the first failure has been printed, so that a broken setup says why without flooding.
static FIRST_ERROR_SHOWN: AtomicBool = AtomicBool::new(false);

struct Options {
    addr: String,
    /// The certificate authority the server's certificate must chain to (PEM).
    ca: String,
    path: String,
    connections: usize,
    seconds: f64,
    warmup: f64,
}

/// What one connection slot saw while measuring.
struct Tally {
    latency: Histogram<u64>,
    bytes: u64,
    errors: u64,
    /// Connections whose handshake resumed an earlier session.
    resumed: u64,
}

const USAGE: &str = "usage: tlsload HOST:PORT --ca CA.pem [--path P] [--connections N] [--seconds S] [--warmup S]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_args()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (tally, seconds) = runtime.block_on(drive(&options))?;
    println!(
        "BENCH_JSON {{\"requests\":{},\"duration_us\":{},\"bytes\":{},\"p50_us\":{},\"p99_us\":{},\"connect\":0,\"read\":0,\"write\":0,\"status\":{},\"timeout\":0,\"resumed\":{}}}",
        tally.latency.len(),
        (seconds * 1e6) as u64,
        tally.bytes,
        tally.latency.value_at_quantile(0.5),
        tally.latency.value_at_quantile(0.99),
        tally.errors,
        tally.resumed,
    );
    Ok(())
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        addr: String::new(),
        ca: String::new(),
        path: "/1kb.bin".to_owned(),
        connections: 64,
        seconds: 10.0,
        warmup: 2.0,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--ca" => options.ca = value()?,
            "--path" => options.path = value()?,
            "--connections" => options.connections = value()?.parse().map_err(|e| format!("--connections: {e}"))?,
            "--seconds" => options.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--warmup" => options.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            _ if options.addr.is_empty() && !arg.starts_with('-') => options.addr = arg,
            _ => return Err(format!("unexpected argument {arg:?}; {USAGE}")),
        }
    }
    if options.addr.is_empty() || options.ca.is_empty() {
        return Err(USAGE.to_owned());
    }
    Ok(options)
}

async fn drive(options: &Options) -> io::Result<(Tally, f64)> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&options.ca).map_err(|e| io::Error::other(format!("--ca: {e}")))? {
        roots
            .add(cert.map_err(|e| io::Error::other(format!("--ca: {e}")))?)
            .map_err(io::Error::other)?;
    }
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        options.path, options.addr
    );
    // As wrk does: the address's host is the server name (an IP address, which TLS sends no SNI for).
    let host = options.addr.rsplit_once(':').map_or(&*options.addr, |(host, _)| host);
    let name = ServerName::try_from(host.to_owned()).map_err(io::Error::other)?;
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(options.warmup);
    let until = measure_from + Duration::from_secs_f64(options.seconds);
    let slots: Vec<_> = (0..options.connections)
        .map(|_| {
            let slot = Slot {
                addr: options.addr.clone(),
                name: name.clone(),
                request: request.clone().into_bytes(),
                connector: connector.clone(),
            };
            tokio::spawn(slot.run(measure_from, until))
        })
        .collect();
    let mut total = Tally {
        latency: new_histogram(),
        bytes: 0,
        errors: 0,
        resumed: 0,
    };
    for slot in slots {
        let tally = slot.await.map_err(io::Error::other)?;
        total.latency.add(&tally.latency).map_err(io::Error::other)?;
        total.bytes += tally.bytes;
        total.errors += tally.errors;
        total.resumed += tally.resumed;
    }
    let measured = Instant::now().min(until).saturating_duration_since(measure_from);
    Ok((total, measured.as_secs_f64().max(1e-9)))
}

/// One closed-loop client: a new connection for each request, until `until`.
struct Slot {
    addr: String,
    name: ServerName<'static>,
    request: Vec<u8>,
    connector: TlsConnector,
}

impl Slot {
    async fn run(self, measure_from: Instant, until: Instant) -> Tally {
        let mut tally = Tally {
            latency: new_histogram(),
            bytes: 0,
            errors: 0,
            resumed: 0,
        };
        let mut response = Vec::with_capacity(2048);
        loop {
            let opened = Instant::now();
            if opened >= until {
                return tally;
            }
            let outcome = self.fetch(&mut response).await;
            let done = Instant::now();
            if opened < measure_from || done > until {
                continue;
            }
            match outcome {
                Err(error) if !FIRST_ERROR_SHOWN.swap(true, Ordering::Relaxed) => {
                    eprintln!("tlsload: {error} (only the first error is shown)");
                    tally.errors += 1;
                }
                Ok(resumed) => {
                    tally.resumed += u64::from(resumed);
                    let micros = u64::try_from(done.duration_since(opened).as_micros()).unwrap_or(u64::MAX);
                    tally.latency.saturating_record(micros.max(1));
                    tally.bytes += response.len() as u64;
                }
                _ => {
                    tally.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Connects, shakes hands, sends the request and reads the response until the server closes; whether
    /// the handshake resumed a session.
    async fn fetch(&self, response: &mut Vec<u8>) -> io::Result<bool> {
        response.clear();
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let mut tls = self.connector.connect(self.name.clone(), tcp).await?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
        tls.write_all(&self.request).await?;
        match tls.read_to_end(response).await {
            Ok(_) => {}
            // A server that closes without close_notify after a whole response (nginx may) is done too.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
            Err(error) => return Err(error),
        }
        if !response.starts_with(b"HTTP/1.1 200 ") {
            let head = String::from_utf8_lossy(&response[..response.len().min(60)]).into_owned();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a 200: {head:?}"),
            ));
        }
        Ok(resumed)
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant figures; `saturating_record` clamps anything slower to 60 s.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}
