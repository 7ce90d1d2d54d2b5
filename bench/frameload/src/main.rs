//! A closed-loop load generator for the length-line protocol: `wrk` for socket backends.
//!
//! ```text
//! frameload ADDR [--connections 64] [--seconds 10] [--warmup 2] [--body JSON]
//! ```
//!
//! Each connection sends one request frame, waits for the reply frame, and sends the next (closed loop, as
//! wrk does over HTTP keep-alive). One thread drives every connection, like `wrk -t1`, so that the load
//! generator fits on one core. Replies received during the warm-up are not counted. Prints one JSON line:
//! `{"requests", "seconds", "rps", "p50_us", "p99_us", "max_us", "errors"}`; an error is a failed connect,
//! a broken connection (it is reopened) or an `{"error": …}` reply.

use std::io;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The default request: the same ~100-byte envelope the HTTP rows POST.
const DEFAULT_BODY: &str =
    r#"{"head":{"method":"echo","token":"bench"},"data":{"user":"ada","id":12345,"tags":["a","b"],"ok":true}}"#;

struct Options {
    addr: String,
    connections: usize,
    seconds: f64,
    warmup: f64,
    body: String,
}

/// What one connection saw while measuring.
struct Tally {
    latency: Histogram<u64>,
    errors: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_args()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (tally, seconds) = runtime.block_on(drive(&options))?;
    let requests = tally.latency.len();
    println!(
        "{{\"requests\":{requests},\"seconds\":{seconds:.3},\"rps\":{:.1},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"errors\":{}}}",
        requests as f64 / seconds,
        tally.latency.value_at_quantile(0.5),
        tally.latency.value_at_quantile(0.99),
        tally.latency.max(),
        tally.errors,
    );
    Ok(())
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        addr: String::new(),
        connections: 64,
        seconds: 10.0,
        warmup: 2.0,
        body: DEFAULT_BODY.to_owned(),
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--connections" => options.connections = value()?.parse().map_err(|e| format!("--connections: {e}"))?,
            "--seconds" => options.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--warmup" => options.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--body" => options.body = value()?,
            _ if options.addr.is_empty() && !arg.starts_with('-') => options.addr = arg,
            _ => return Err(format!("unexpected argument {arg:?}; usage: frameload ADDR [--connections N] [--seconds S] [--warmup S] [--body JSON]")),
        }
    }
    if options.addr.is_empty() {
        return Err("usage: frameload ADDR [--connections N] [--seconds S] [--warmup S] [--body JSON]".to_owned());
    }
    Ok(options)
}

async fn drive(options: &Options) -> io::Result<(Tally, f64)> {
    let mut frame = format!("{:>10}\r\n", options.body.len()).into_bytes();
    frame.extend_from_slice(options.body.as_bytes());
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(options.warmup);
    let until = measure_from + Duration::from_secs_f64(options.seconds);
    let tasks: Vec<_> = (0..options.connections)
        .map(|_| tokio::spawn(connection(options.addr.clone(), frame.clone(), measure_from, until)))
        .collect();
    let mut total = Tally {
        latency: new_histogram(),
        errors: 0,
    };
    for task in tasks {
        let tally = task.await.map_err(io::Error::other)?;
        total.latency.add(&tally.latency).map_err(io::Error::other)?;
        total.errors += tally.errors;
    }
    let measured = Instant::now().min(until).saturating_duration_since(measure_from);
    Ok((total, measured.as_secs_f64().max(1e-9)))
}

/// Runs one closed-loop connection until `until`, reopening it if it breaks.
async fn connection(addr: String, frame: Vec<u8>, measure_from: Instant, until: Instant) -> Tally {
    let mut tally = Tally {
        latency: new_histogram(),
        errors: 0,
    };
    let mut reply = Vec::new();
    while Instant::now() < until {
        let stream = match TcpStream::connect(&addr).await {
            Ok(stream) => stream,
            Err(_) => {
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut stream = BufReader::new(stream);
        loop {
            let sent = Instant::now();
            if sent >= until {
                return tally;
            }
            if exchange(&mut stream, &frame, &mut reply).await.is_err() {
                tally.errors += 1;
                break;
            }
            let done = Instant::now();
            if sent < measure_from || done > until {
                continue;
            }
            if reply.starts_with(br#"{"error""#) {
                tally.errors += 1;
            } else {
                let micros = u64::try_from(done.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                tally.latency.saturating_record(micros.max(1));
            }
        }
    }
    tally
}

/// Sends one request frame and reads the reply frame into `reply`.
async fn exchange(stream: &mut BufReader<TcpStream>, frame: &[u8], reply: &mut Vec<u8>) -> io::Result<()> {
    stream.get_mut().write_all(frame).await?;
    let mut line = [0u8; 12];
    stream.read_exact(&mut line).await?;
    let len = std::str::from_utf8(&line[..10])
        .ok()
        .and_then(|digits| digits.trim_start().parse::<usize>().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad length line in reply"))?;
    reply.resize(len, 0);
    stream.read_exact(reply).await?;
    Ok(())
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant figures; `saturating_record` clamps anything slower to 60 s.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}
