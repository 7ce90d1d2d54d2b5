//! The HTTP → socket gateway against the real binary and backends in both seed styles.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::config::{config, socket_module};
use support::socket_backend::{envelope, Backend, Style};
use support::{free_port, http, send_raw, Proxy};

#[test]
fn both_seed_styles_round_trip_byte_for_byte() {
    let java = Backend::start(Style::ZeroPaddedThenClose);
    let go = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "",
        &config(&[
            socket_module("java", &[java.addr], ""),
            socket_module("go", &[go.addr], ""),
        ]),
    );
    for module in ["java", "go"] {
        for i in 0..20 {
            let body = envelope("add", json!({ "i": i, "name": "Zoë ✓" }));
            let response = proxy.post(&format!("/{module}/"), &[], &body);
            assert_eq!(response.status, 200, "{module}: {}", response.text());
            assert_eq!(response.header("content-type"), Some("application/json; charset=utf-8"));
            let reply = response.json();
            assert_eq!(
                reply["echo"],
                serde_json::from_slice::<Value>(&body).unwrap(),
                "passed through unchanged"
            );
        }
    }
    assert_eq!(java.requests(), 20);
    assert_eq!(
        java.connections(),
        20,
        "the closing backend gets a fresh connection each time"
    );
    assert_eq!(go.requests(), 20);
    assert_eq!(
        go.connections(),
        1,
        "sequential requests reuse one pooled keep-alive connection"
    );
}

#[test]
fn body_is_forwarded_byte_for_byte() {
    // Whitespace and key order are the client's; the proxy must not re-serialise.
    let go = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[go.addr], "")]));
    let body = br#"{ "data" : [1,  2.50, "x"],"head":{"method":"m"} }"#;
    let response = proxy.post("//s3/ignored/rest?q=1", &[], body);
    assert_eq!(response.status, 200);
    let echoed = response.json()["echo"].clone();
    assert_eq!(echoed, serde_json::from_slice::<Value>(body).unwrap());
}

#[test]
fn request_errors_have_statuses_and_json_bodies() {
    let go = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start("max_body = 1000", &config(&[socket_module("s3", &[go.addr], "")]));

    let response = proxy.get("/s3/", &[]);
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("POST"));
    assert_eq!(response.json()["error"]["status"], 405);

    let response = proxy.post("/s3/", &[], b"{not json");
    assert_eq!(response.status, 400);
    assert!(response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not UTF-8 JSON"));

    let response = proxy.post("/s3/", &[], b"\"\xff\xfe\"");
    assert_eq!(response.status, 400, "invalid UTF-8 inside a JSON string");

    let big = vec![b' '; 2000];
    let response = proxy.post("/s3/", &[], &big);
    assert_eq!(response.status, 413);
    assert!(response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_body"));

    // Chunked: no Content-Length, the limit is enforced while reading.
    let mut raw = b"POST /s3/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        raw.extend_from_slice(b"1f4\r\n");
        raw.extend_from_slice(&[b' '; 500]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(send_raw(proxy.addr, &raw).status, 413);

    assert_eq!(go.requests(), 0, "nothing bad reached the backend");
    let response = proxy.post("/s3/", &[], &envelope("ok", json!(null)));
    assert_eq!(response.status, 200, "the module still works");
}

#[test]
fn a_413_is_sent_without_reading_a_huge_body() {
    let go = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start("max_body = 1000", &config(&[socket_module("s3", &[go.addr], "")]));
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream
        .write_all(b"POST /s3/ HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000000\r\n\r\n")
        .unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"),
        "answered before the body was sent"
    );
}

#[test]
fn backend_faults_map_to_502_and_504() {
    let cases = [
        (Style::Garbage, 502, "bad reply"),
        (Style::Short, 502, "closed the connection before replying"),
        (Style::Huge, 502, "larger than the maximum"),
        (Style::CloseAfterRead, 502, "closed the connection before replying"),
        (Style::Hang, 504, "did not reply within"),
    ];
    // One request per connection, and shared connections (`pipeline`): the same faults, the same answers.
    for ((style, status, needle), pipeline) in cases
        .into_iter()
        .flat_map(|case| [(case, ""), (case, ", pipeline = 4")])
    {
        let backend = Backend::start(style);
        let proxy = Proxy::start(
            "",
            &config(&[socket_module(
                "s3",
                &[backend.addr],
                &format!(", timeout = 0.5, max_frame = 1000{pipeline}"),
            )]),
        );
        let started = Instant::now();
        let response = proxy.post("/s3/", &[], &envelope("x", json!(1)));
        assert_eq!(response.status, status, "{needle}{pipeline}: {}", response.text());
        let message = response.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(needle), "{message}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "answered within the configured timeout"
        );
        // A pipelined module first asks a new connection whether it pipelines; a backend that hangs never
        // answers that, so the request times out before it is written.
        let reached = usize::from(!matches!(style, Style::Hang) || pipeline.is_empty());
        assert_eq!(
            backend.requests(),
            reached,
            "a request that reached a backend is never sent again"
        );
        assert!(proxy.log().contains(needle), "every error is logged");
    }
}

#[test]
fn html_clients_get_the_error_page() {
    let dead = free_port();
    let proxy = Proxy::start(
        "",
        &config(&[format!("{{ module = \"s3\", forward_pass = \"127.0.0.1:{dead}\" }}")]),
    );
    let response = proxy.post(
        "/s3/",
        &[("Accept", "text/html,application/xhtml+xml")],
        &envelope("x", json!(1)),
    );
    assert_eq!(response.status, 502);
    assert_eq!(response.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        response.body,
        std::fs::read(support::repo_html().join("500.html")).unwrap()
    );
    let response = proxy.post("/s3/", &[], &envelope("x", json!(1)));
    assert_eq!(response.status, 502);
    assert!(response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no node"));
}

#[test]
fn connect_failure_moves_on_and_masks_the_node_until_fail_timeout() {
    let live = Backend::start(Style::SpaceKeepAlive);
    let dead_port = free_port();
    let dead: SocketAddr = format!("127.0.0.1:{dead_port}").parse().unwrap();
    let proxy = Proxy::start(
        "",
        &config(&[socket_module("s3", &[live.addr, dead], ", fail_timeout = 1")]),
    );
    for _ in 0..30 {
        let response = proxy.post("/s3/", &[], &envelope("x", json!(1)));
        assert_eq!(response.status, 200, "a connect failure goes on to the other node");
    }
    assert_eq!(live.requests(), 30);
    let masked_lines = proxy.log().matches("connect failed; node masked").count();
    assert_eq!(
        masked_lines,
        1,
        "once masked, the dead node is skipped:\n{}",
        proxy.log()
    );

    // The node comes back; after fail_timeout it takes traffic again.
    let revived = Backend::start_on(TcpListener::bind(dead).unwrap(), Style::SpaceKeepAlive);
    std::thread::sleep(Duration::from_millis(1200));
    for _ in 0..40 {
        assert_eq!(proxy.post("/s3/", &[], &envelope("x", json!(1))).status, 200);
    }
    assert!(revived.requests() > 0, "an unmasked node is used again");
}

/// The probe of a masked node that answers takes it back at once: later requests neither wait out
/// `fail_timeout` as "masked" nor log a warning each.
#[test]
fn every_node_masked_still_tries_and_logs_it() {
    let dead = free_port();
    let proxy = Proxy::start(
        "",
        &config(&[format!(
            "{{ module = \"s3\", forward_pass = \"127.0.0.1:{dead}\", fail_timeout = 60 }}"
        )]),
    );
    assert_eq!(proxy.post("/s3/", &[], &envelope("x", json!(1))).status, 502);
    let backend = Backend::start_on(TcpListener::bind(("127.0.0.1", dead)).unwrap(), Style::SpaceKeepAlive);
    let response = proxy.post("/s3/", &[], &envelope("x", json!(1)));
    assert_eq!(response.status, 200, "with every node masked the proxy picks among all");
    assert_eq!(backend.requests(), 1);
    assert!(proxy.log().contains("every node is masked"));
    for _ in 0..5 {
        assert_eq!(proxy.post("/s3/", &[], &envelope("x", json!(1))).status, 200);
    }
    assert_eq!(
        proxy.log().matches("every node is masked").count(),
        1,
        "the node that answered is unmasked:\n{}",
        proxy.log()
    );
}

/// The race with a backend that closes kept connections: it replied, the proxy reused the connection,
/// and the backend closed it with the request unread. The reset proves it never read it, so it is sent again.
#[test]
fn a_request_that_a_closing_backend_reset_unread_is_sent_again() {
    let backend = Backend::start(Style::ReplyThenCloseUnread(Duration::from_millis(300)));
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[backend.addr], "")]));
    for i in 0..3 {
        let response = proxy.post("/s3/", &[], &envelope("add", json!({ "i": i })));
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
        assert_eq!(response.json()["echo"]["data"]["i"], i);
    }
    assert_eq!(backend.requests(), 3, "each request was read once");
    assert_eq!(backend.connections(), 3);
}

#[test]
fn two_hundred_concurrent_requests() {
    // The closing backend is configured as such (`keepalive = false`). Pooled, its connections raced
    // the proxy: the backend's close could land after the proxy checked a kept connection and before it
    // wrote the next request, and an end of stream cannot tell that unread request from one the backend
    // dropped (502). Configured right, nothing may be lost.
    let go = Backend::start(Style::SpaceKeepAlive);
    let java = Backend::start(Style::ZeroPaddedThenClose);
    let proxy = Proxy::start(
        "",
        &config(&[
            socket_module("go", &[go.addr], ""),
            socket_module("java", &[java.addr], ", keepalive = false"),
        ]),
    );
    let addr = proxy.addr;
    let threads: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let body = envelope("add", json!({ "i": i }));
                let module = if i % 2 == 0 { "go" } else { "java" };
                let response = send_raw(addr, &http("POST", &format!("/{module}/"), &[], &body));
                (response.status, response.json()["echo"]["data"]["i"].as_i64())
            })
        })
        .collect();
    for (i, thread) in threads.into_iter().enumerate() {
        assert_eq!(
            thread.join().unwrap(),
            (200, Some(i as i64)),
            "request {i}: each reply belongs to its request, none lost"
        );
    }
    assert_eq!((go.requests(), java.requests()), (100, 100));
}

#[test]
fn five_megabyte_json_round_trip() {
    let go = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[go.addr], "")]));
    let text = "x".repeat(5 * 1024 * 1024);
    let body = envelope("big", json!({ "text": text }));
    let response = proxy.post("/s3/", &[], &body);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json()["echo"]["data"]["text"].as_str().map(str::len),
        Some(5 * 1024 * 1024)
    );
}

#[test]
fn hanging_backend_does_not_hold_up_others() {
    let hang = Backend::start(Style::Hang);
    let go = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "",
        &config(&[
            socket_module("slow", &[hang.addr], ", timeout = 3"),
            socket_module("fast", &[go.addr], ""),
        ]),
    );
    let addr = proxy.addr;
    let slow =
        std::thread::spawn(move || send_raw(addr, &http("POST", "/slow/", &[], &envelope("x", json!(1)))).status);
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(proxy.post("/fast/", &[], &envelope("x", json!(1))).status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "fast module served while the slow one waits"
    );
    assert_eq!(slow.join().unwrap(), 504);
}

#[test]
fn graceful_shutdown_finishes_requests_in_flight() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Answers after one second.
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = [0u8; 12];
        reader.read_exact(&mut line).unwrap();
        let len: usize = std::str::from_utf8(&line[..10]).unwrap().trim().parse().unwrap();
        let mut payload = vec![0u8; len];
        reader.read_exact(&mut payload).unwrap();
        std::thread::sleep(Duration::from_secs(1));
        let mut stream = stream;
        stream.write_all(b"         2\r\n{}").unwrap();
    });
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[addr], "")]));
    let proxy_addr = proxy.addr;
    let in_flight =
        std::thread::spawn(move || send_raw(proxy_addr, &http("POST", "/s3/", &[], &envelope("x", json!(1)))));
    std::thread::sleep(Duration::from_millis(300));
    let status = proxy.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let response = in_flight.join().unwrap();
    assert_eq!((response.status, response.text()), (200, "{}".to_owned()));
    assert!(TcpStream::connect(proxy_addr).is_err(), "no longer accepting");
}

#[test]
fn access_log_names_module_node_and_status() {
    let go = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "",
        &format!(
            "{}\n[log]\naccess_format = \"json\"\n",
            config(&[socket_module("s3", &[go.addr], "")])
        ),
    );
    assert_eq!(proxy.post("/s3/", &[], &envelope("x", json!(1))).status, 200);
    let lines = proxy.access_json();
    let line = lines
        .iter()
        .find(|l| l["method"] == "POST" && l["path"] == "/s3/")
        .unwrap_or_else(|| panic!("no access line:\n{}", proxy.access_log()));
    assert_eq!(line["module"], "s3");
    assert_eq!(line["node"], go.addr.to_string());
    assert_eq!(line["status"], 200);
    assert!(line["bytes_out"].is_u64() && line["duration_ms"].is_f64(), "{line}");
}
