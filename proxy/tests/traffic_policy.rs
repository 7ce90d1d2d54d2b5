//! Traffic policy per module: weighted balancing, rate limits, max_conns, head shaping, added headers and
//! request ids, through the real binary.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use serde_json::json;
use support::config::config;
use support::socket_backend::{envelope, Backend, Style};
use support::{http, send_raw, Proxy};

fn weighted(nodes: &[(SocketAddr, u32)]) -> String {
    let nodes: Vec<String> = nodes
        .iter()
        .map(|(addr, weight)| format!("{addr} weight={weight}"))
        .collect();
    nodes.join(", ")
}

fn socket(entry: &str) -> String {
    config(&[entry.to_owned()])
}

fn spread(balance: &str) -> (usize, usize) {
    let heavy = Backend::start(Style::SpaceKeepAlive);
    let light = Backend::start(Style::SpaceKeepAlive);
    let nodes = weighted(&[(heavy.addr, 3), (light.addr, 1)]);
    let proxy = Proxy::start(
        "",
        &socket(&format!(
            "{{ module = \"s3\", forward_pass = \"{nodes}\", balance = \"{balance}\" }}"
        )),
    );
    for _ in 0..1000 {
        assert_eq!(proxy.post("/s3/", &[], &envelope("x", json!(1))).status, 200);
    }
    (heavy.requests(), light.requests())
}

#[test]
fn weights_are_respected_by_random_and_round_robin() {
    let (heavy, light) = spread("round_robin");
    assert_eq!((heavy, light), (750, 250), "round robin follows weights exactly");
    let (heavy, light) = spread("random");
    assert_eq!(heavy + light, 1000);
    assert!(
        (690..=810).contains(&heavy),
        "random follows weights within a tolerance: {heavy}/{light}"
    );
}

#[test]
fn least_conn_avoids_the_busy_node() {
    let slow = Backend::start(Style::Slow(Duration::from_secs(3)));
    let fast = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "",
        &socket(&format!(
            "{{ module = \"s3\", forward_pass = [\"{}\", \"{}\"], balance = \"least_conn\" }}",
            slow.addr, fast.addr
        )),
    );
    let addr = proxy.addr;
    let post = move || send_raw(addr, &http("POST", "/s3/", &[], &envelope("x", json!(1)))).status;
    // Between two idle nodes least_conn picks either, so requests go out one at a time until one is held
    // by the slow node. (Arrivals on a timer made this depend on how fast a loaded machine answers.)
    let held = loop {
        let request = std::thread::spawn(post);
        let deadline = Instant::now() + Duration::from_secs(2);
        while slow.requests() == 0 && !request.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if slow.requests() == 1 {
            break request;
        }
        assert_eq!(request.join().unwrap(), 200);
        assert!(fast.requests() < 40, "least_conn never chose the slow node at a tie");
    };
    // The slow node now holds one request for 3 s; every request sent after the previous one was answered
    // finds it busier than the idle fast node.
    let before = fast.requests();
    for _ in 0..8 {
        assert_eq!(post(), 200);
    }
    assert_eq!(
        slow.requests(),
        1,
        "least_conn sent a request to the busy node:\n{}",
        proxy.log()
    );
    assert_eq!(fast.requests(), before + 8);
    assert_eq!(held.join().unwrap(), 200);
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let go = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "",
        &socket(&format!(
            "{{ module = \"s3\", forward_pass = \"{}\", rate_limit = {{ rate = 2, burst = 5 }} }}",
            go.addr
        )),
    );
    let statuses: Vec<u16> = (0..12)
        .map(|_| proxy.post("/s3/", &[], &envelope("x", json!(1))).status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        5,
        "the burst passes: {statuses:?}"
    );
    assert!(statuses[5..].iter().all(|&s| s == 429), "{statuses:?}");
    let refused = proxy.post("/s3/", &[], &envelope("x", json!(1)));
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("rate_limit"));
    assert_eq!(go.requests(), 5, "refused requests never reach the backend");
    // Two per second refill.
    std::thread::sleep(Duration::from_millis(1100));
    let after: Vec<u16> = (0..4)
        .map(|_| proxy.post("/s3/", &[], &envelope("x", json!(1))).status)
        .collect();
    assert_eq!(after.iter().filter(|&&s| s == 200).count(), 2, "{after:?}");
    assert!(proxy.log().contains("request refused by policy"));
}

#[test]
fn max_conns_queues_then_refuses() {
    let slow = Backend::start(Style::Slow(Duration::from_millis(600)));
    let proxy = Proxy::start(
        "",
        &socket(&format!(
            "{{ module = \"short\", forward_pass = \"{a}\", max_conns = 1, max_conns_wait = 0.2 }},\n\
             {{ module = \"long\", forward_pass = \"{a}\", max_conns = 1, max_conns_wait = 3 }}",
            a = slow.addr
        )),
    );
    let addr = proxy.addr;
    let call = move |module: &'static str| {
        std::thread::spawn(move || {
            send_raw(
                addr,
                &http("POST", &format!("/{module}/"), &[], &envelope("x", json!(1))),
            )
        })
    };
    let first = call("short");
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let second = call("short").join().unwrap();
    assert_eq!(second.status, 503, "no slot within max_conns_wait");
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "refused after the wait, not after the slow call"
    );
    assert_eq!(first.join().unwrap().status, 200);

    let first = call("long");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        call("long").join().unwrap().status,
        200,
        "a request queued within the bound gets the slot"
    );
    assert_eq!(first.join().unwrap().status, 200);
}

#[test]
fn head_fields_are_set_by_the_proxy_and_seen_by_the_backend() {
    let go = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "",
        &socket(&format!(
            "{{ module = \"s3\", forward_pass = \"{}\", head = {{ token = \"header:Authorization\", \
             client_ip = \"remote_addr\", request_id = \"generate\" }}, add_headers = {{ \"Cache-Control\" = \"no-store\" }} }}",
            go.addr
        )),
    );
    let body = br#"{"head":{"method":"add","token":"forged","client_ip":"6.6.6.6"},"data":{"n":1}}"#;
    let response = proxy.post("/s3/", &[("Authorization", "Bearer real")], body);
    assert_eq!(response.status, 200);
    let head = &response.json()["echo"]["head"];
    assert_eq!(head["method"], "add");
    assert_eq!(head["token"], "Bearer real", "overwritten from the header");
    assert_eq!(head["client_ip"], "127.0.0.1", "the real client address");
    assert_eq!(
        head["request_id"].as_str().map(str::len),
        Some(32),
        "a generated id: {head}"
    );
    assert_eq!(response.header("cache-control"), Some("no-store"));

    // The client may name the request for its logs, never the id the backend is told the proxy made.
    let response = proxy.post("/s3/", &[("X-Request-Id", "trace-42")], body);
    assert_eq!(response.header("x-request-id"), Some("trace-42"));
    let id = response.json()["echo"]["head"]["request_id"].clone();
    assert!(id.as_str().is_some_and(|id| id.len() == 32 && id != "trace-42"), "{id}");

    let response = proxy.post("/s3/", &[], body);
    assert_eq!(
        response.json()["echo"]["head"].get("token"),
        None,
        "no header: the forged token is removed"
    );
    let response = proxy.post("/s3/", &[], b"[1, 2]");
    assert_eq!(
        response.status, 400,
        "an envelope that is not an object cannot be shaped"
    );
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("head rules"),
        "the message names the head rules: {message}"
    );
}

/// The id the proxy made is one id everywhere: the backend's `request_id`, the response's
/// `X-Request-Id` and the access line.
#[test]
fn a_generated_head_id_matches_the_response_and_the_access_log() {
    let go = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "",
        &format!(
            "{}\n[log]\naccess_format = \"json\"\n",
            socket(&format!(
                "{{ module = \"s3\", forward_pass = \"{}\", head = {{ request_id = \"generate\" }} }}",
                go.addr
            ))
        ),
    );
    let response = proxy.post(
        "/s3/",
        &[],
        br#"{"head":{"method":"add","request_id":"forged"},"data":1}"#,
    );
    assert_eq!(response.status, 200);
    let sent = response.header("x-request-id").unwrap().to_owned();
    assert_eq!(response.json()["echo"]["head"]["request_id"], sent.as_str());
    let logged = proxy.access_json();
    assert!(
        logged
            .iter()
            .any(|line| line["path"] == "/s3/" && line["request_id"] == sent.as_str()),
        "{logged:?}"
    );
}

#[test]
fn request_ids_are_passed_through_or_generated_and_logged() {
    let proxy = Proxy::start("", "[log]\naccess_format = \"json\"\n");
    let response = proxy.get("/", &[("X-Request-Id", "trace-42")]);
    assert_eq!(response.header("x-request-id"), Some("trace-42"));
    let generated = proxy.get("/", &[]).header("x-request-id").unwrap().to_owned();
    assert_eq!(generated.len(), 32);
    let ids: Vec<_> = proxy.access_json().iter().map(|l| l["request_id"].clone()).collect();
    assert_eq!(ids, ["trace-42", generated.as_str()], "{}", proxy.access_log());
}

/// A socket backend that hands each frame's payload to the test exactly as it arrived, and answers `{}`.
fn recording_backend() -> (SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut line = [0u8; 12];
            while stream.read_exact(&mut line).is_ok() {
                let len: usize = std::str::from_utf8(&line[..10]).unwrap().trim().parse().unwrap();
                let mut payload = vec![0u8; len];
                stream.read_exact(&mut payload).unwrap();
                let _ = sent.send(payload);
                stream.write_all(b"         2\r\n{}").unwrap();
            }
        }
    });
    (addr, received)
}

#[test]
fn head_rules_rewrite_only_head_and_numbers_arrive_as_sent() {
    let (backend, received) = recording_backend();
    let proxy = Proxy::start(
        "",
        &socket(&format!(
            "{{ module = \"s3\", forward_pass = \"{backend}\", head = {{ client_ip = \"remote_addr\" }} }}"
        )),
    );
    let before = r#"{"data": {"big": 12345678901234567890123, "long": 0.10000000000000000000001}, "head": "#;
    let after = r#" , "more" : [1.0, -0e0, 1E+400] }"#;
    let body = format!(r#"{before}{{"method":"add","n":7.50}}{after}"#);
    let response = proxy.post("/s3/", &[], body.as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
    let got = String::from_utf8(received.recv_timeout(Duration::from_secs(5)).unwrap()).unwrap();
    assert!(got.starts_with(before) && got.ends_with(after), "the backend got {got}");
    assert_eq!(
        &got[before.len()..got.len() - after.len()],
        r#"{"method":"add","n":7.50,"client_ip":"127.0.0.1"}"#
    );
}

/// `X-Forwarded-For` names the client only when it comes from a `[server] trusted_proxies` address: the
/// backend's `remote_addr` field and the access log show who the client really is.
#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let go = Backend::start(Style::SpaceKeepAlive);
    let module = socket(&format!(
        "{{ module = \"s3\", forward_pass = \"{}\", head = {{ client_ip = \"remote_addr\" }} }}",
        go.addr
    ));
    let body = br#"{"head":{"method":"add"},"data":1}"#;
    let forged = [("X-Forwarded-For", "6.6.6.6, 198.51.100.7")];

    let untrusted = Proxy::start("trusted_proxies = [\"10.0.0.0/8\"]", &module);
    let response = untrusted.post("/s3/", &forged, body);
    assert_eq!(
        response.json()["echo"]["head"]["client_ip"],
        "127.0.0.1",
        "spoofed: ignored"
    );
    let access = untrusted.access_log();
    assert!(
        access.starts_with("127.0.0.1 ") && !access.contains("198.51.100.7"),
        "{access}"
    );

    let trusted = Proxy::start("trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]", &module);
    let response = trusted.post("/s3/", &forged, body);
    assert_eq!(
        response.json()["echo"]["head"]["client_ip"],
        "198.51.100.7",
        "the first untrusted hop from the right"
    );
    let access = trusted.access_log();
    assert!(access.starts_with("198.51.100.7 - - ["), "{access}");
}
