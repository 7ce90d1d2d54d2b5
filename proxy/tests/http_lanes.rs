//! Pipelined `module_http` lanes under a client that stops reading: the responses queued behind its
//! large one on the same upstream connection still arrive. Against the real binary and a real
//! keep-alive HTTP/1.1 upstream.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::config::{http_config, http_module};
use support::http_upstream::{Behaviour, Upstream};
use support::{http, parse_response, Proxy};

/// Larger than the kernel's socket buffers between the proxy and a client that reads nothing.
const BIG: usize = 32 * 1024 * 1024;

/// One GET on its own connection, given `within` to be answered whole.
fn get(addr: SocketAddr, path: &str, within: Duration) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(within)).unwrap();
    stream.write_all(&http("GET", path, &[], b"")).unwrap();
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{path}: nothing whole within {within:?}: {e}"))?;
    let response = parse_response(&bytes).ok_or_else(|| format!("{path}: not HTTP"))?;
    Ok((response.status, response.text()))
}

#[test]
fn a_client_that_stops_reading_a_large_response_holds_up_no_other_response() {
    let up = Upstream::start("a", Behaviour::Echo);
    // One lane is enough for every request here, so the small ones queue behind the large one.
    let proxy = Proxy::start("", &http_config(&[http_module("p", &[up.url()], "pipeline = 16")]));
    let mut slow = TcpStream::connect(proxy.addr).unwrap();
    slow.write_all(&http("GET", &format!("/p/stream?bytes={BIG}"), &[], b""))
        .unwrap();
    // The large response is under way and the client reads none of it.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let small: Vec<_> = (0..10)
        .map(|i| {
            let addr = proxy.addr;
            std::thread::spawn(move || get(addr, &format!("/p/item/{i}"), Duration::from_secs(10)))
        })
        .collect();
    for (i, call) in small.into_iter().enumerate() {
        let (status, body) = call.join().unwrap().unwrap_or_else(|stalled| panic!("{stalled}"));
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!(r#""path":"/p/item/{i}""#)),
            "request {i} got {body}"
        );
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "the small responses took {waited:?}");
    // The slow client, reading at last, gets its response whole.
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut bytes = Vec::new();
    slow.read_to_end(&mut bytes).unwrap();
    let response = parse_response(&bytes).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), BIG);
    assert!(response.body.iter().all(|&b| b == b'x'));
}
