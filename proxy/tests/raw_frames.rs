//! `[server] raw_frames`: socket-protocol clients and HTTP clients on the same port, against the real
//! binary, real backends, and the SDK's own clients.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use modproxy_sdk::frame::{read_frame, write_frame};
use modproxy_sdk::{BlockingClient, Client};
use serde_json::{json, Value};
use support::config::{config, http_module, modules, socket_module};
use support::socket_backend::{envelope, Backend, Style};
use support::{free_port, http, send_raw, Proxy};

fn raw_client(proxy: &Proxy) -> BlockingClient {
    BlockingClient::connect(proxy.addr).unwrap()
}

fn error_code(reply: &[u8]) -> String {
    let value: Value = serde_json::from_slice(reply).unwrap();
    value["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error reply: {value}"))
        .to_owned()
}

/// Reads until the peer closes; true when it closed (rather than timing out with the line open).
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn head_module_routes_each_frame_to_its_module() {
    let (one, two) = (
        Backend::start(Style::SpaceKeepAlive),
        Backend::start(Style::ZeroPaddedThenClose),
    );
    let proxy = Proxy::start(
        "raw_frames = true",
        &format!(
            "{}\n[log]\naccess_format = \"json\"\n",
            config(&[
                socket_module("one", &[one.addr], ""),
                socket_module("two", &[two.addr], ""),
            ])
        ),
    );
    let mut client = raw_client(&proxy);
    for i in 0..10 {
        let module = if i % 2 == 0 { "one" } else { "two" };
        let reply = client.call_module(module, "add", json!({ "i": i })).unwrap();
        let backend = if i % 2 == 0 { &one } else { &two };
        assert_eq!(reply["port"], backend.addr.port(), "{module}");
        assert_eq!(
            reply["echo"]["head"]["module"], module,
            "head.module reaches the backend"
        );
        assert_eq!(reply["echo"]["data"], json!({ "i": i }));
    }
    assert_eq!((one.requests(), two.requests()), (5, 5));
    assert_eq!(one.connections(), 1, "the proxy's pool serves raw frames too");

    // The payload passes byte for byte: the proxy reads head.module but does not re-serialise.
    let payload = br#"{ "data" : [1,  2.50],"head":{"module":"one", "method":"m"} }"#;
    let reply: Value = serde_json::from_slice(&client.call_raw(payload).unwrap()).unwrap();
    assert_eq!(reply["echo"], serde_json::from_slice::<Value>(payload).unwrap());

    // The async client, too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = Client::connect(proxy.addr).await.unwrap();
        let reply = client.call_module("two", "list", json!(null)).await.unwrap();
        assert_eq!(reply["port"], two.addr.port());
    });

    let node = one.addr.to_string();
    assert!(
        proxy.access_json().iter().any(|line| line["method"] == "FRAME"
            && line["path"] == "/one"
            && line["frame_method"] == "add"
            && line["module"] == "one"
            && line["node"] == node.as_str()
            && line["status"] == 200),
        "{}",
        proxy.access_log()
    );
}

#[test]
fn http_and_raw_frame_clients_share_the_port_at_once() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "raw_frames = true",
        &config(&[socket_module("s3", &[backend.addr], "")]),
    );
    let addr = proxy.addr;
    let (clients, calls) = (8, 40);
    let started = Instant::now();
    let mut threads = Vec::new();
    for c in 0..clients {
        threads.push(std::thread::spawn(move || {
            let mut client = BlockingClient::connect(addr).unwrap();
            for i in 0..calls {
                let reply = client.call_module("s3", "add", json!({ "raw": c, "i": i })).unwrap();
                assert_eq!(reply["echo"]["data"], json!({ "raw": c, "i": i }));
            }
        }));
        threads.push(std::thread::spawn(move || {
            for i in 0..calls {
                let body = envelope("add", json!({ "http": c, "i": i }));
                let response = send_raw(addr, &http("POST", "/s3/", &[], &body));
                assert_eq!(response.status, 200, "{}", response.text());
                assert_eq!(response.json()["echo"]["data"], json!({ "http": c, "i": i }));
                if i % 10 == 0 {
                    assert_eq!(send_raw(addr, &http("GET", "/", &[], b"")).status, 200);
                }
            }
        }));
    }
    for thread in threads {
        thread.join().unwrap();
    }
    eprintln!(
        "{} raw-frame calls and {} HTTP requests on one port: {:?}",
        clients * calls,
        clients * calls * 11 / 10,
        started.elapsed()
    );
    assert_eq!(backend.requests(), 2 * clients * calls);
}

#[test]
fn every_failure_is_an_error_reply_and_the_connection_lives_on() {
    let live = Backend::start(Style::SpaceKeepAlive);
    let hang = Backend::start(Style::Hang);
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let modules = modules(
        &[
            socket_module("live", &[live.addr], ""),
            socket_module("hang", &[hang.addr], ", timeout = 0.5"),
            socket_module("dead", &[dead], ""),
        ],
        &[http_module("web", &["http://127.0.0.1:1"], "")],
    );
    let proxy = Proxy::start("raw_frames = true", &modules);
    let mut client = raw_client(&proxy);
    let ok = |client: &mut BlockingClient| {
        let reply = client.call_module("live", "ping", json!(1)).unwrap();
        assert_eq!(reply["port"], live.addr.port());
    };
    ok(&mut client);

    let cases: [(&str, &[u8]); 6] = [
        (
            "module_not_found",
            br#"{"head":{"module":"nope","method":"x"},"data":1}"#,
        ),
        (
            "not_socket_module",
            br#"{"head":{"module":"web","method":"x"},"data":1}"#,
        ),
        ("bad_request", b"{not json"),
        ("bad_request", br#"{"head":{"method":"x"},"data":1}"#),
        ("bad_request", br#"{"head":{"module":5,"method":"x"}}"#),
        ("bad_gateway", br#"{"head":{"module":"dead","method":"x"}}"#),
    ];
    for (code, payload) in cases {
        let reply = client.call_raw(payload).unwrap();
        assert_eq!(error_code(&reply), code, "{}", String::from_utf8_lossy(payload));
        ok(&mut client);
    }
    let started = Instant::now();
    let error = client.call_module("hang", "x", json!(null)).unwrap_err();
    assert_eq!(error.code(), Some("gateway_timeout"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
    ok(&mut client);
    assert_eq!(hang.requests(), 1);

    // The SDK client surfaces the proxy's refusals as method errors with the same codes.
    let error = client.call_module("nope", "x", json!(null)).unwrap_err();
    assert_eq!(error.code(), Some("module_not_found"));
    assert!(error.to_string().contains("no module 'nope'"), "{error}");
}

#[test]
fn framing_errors_close_the_connection() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "raw_frames = true\nmax_body = 1000",
        &config(&[socket_module("s3", &[backend.addr], "")]),
    );
    let good = br#"{"head":{"module":"s3","method":"x"}}"#;

    // Over max_body: told so in the protocol, then closed (the rest of the frame cannot be trusted).
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write_frame(&mut stream, good).unwrap();
    assert!(read_frame(&mut stream, 1 << 20).unwrap().is_some());
    let _ = stream.write_all(&[&b"      2000\r\n"[..], &[b' '; 2000]].concat());
    let reply = read_frame(&mut stream, 1 << 20).unwrap().unwrap();
    assert_eq!(error_code(&reply), "payload_too_large");
    assert!(closed_by_peer(&mut stream));

    // A broken length line after a good frame: closed, nothing sent on.
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write_frame(&mut stream, good).unwrap();
    assert!(read_frame(&mut stream, 1 << 20).unwrap().is_some());
    stream.write_all(b"   12x\r\n    {}").unwrap();
    assert!(closed_by_peer(&mut stream));
    assert_eq!(backend.requests(), 2);
}

#[test]
fn anything_but_a_length_line_is_http() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "raw_frames = true",
        &config(&[socket_module("s3", &[backend.addr], "")]),
    );

    // Garbage and near-miss length lines go to hyper, which answers 400.
    for garbage in [&b"hello world\r\n\r\n"[..], b"          \r\n{}", b"       -42\r\n{}"] {
        let response = send_raw(proxy.addr, garbage);
        assert_eq!(response.status, 400, "{:?}", String::from_utf8_lossy(garbage));
    }

    // A slow HTTP client is not mistaken for a frame nor kept waiting: its first byte decides.
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = http("GET", "/", &[], b"");
    stream.write_all(&request[..1]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    for byte in &request[1..] {
        stream.write_all(&[*byte]).unwrap();
    }
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    assert_eq!(support::parse_response(&bytes).unwrap().status, 200);

    // A client that connects and waits before its first frame is still a raw-frame client.
    let mut client = raw_client(&proxy);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        client.call_module("s3", "x", json!(null)).unwrap()["port"],
        backend.addr.port()
    );

    // The slow-line case: a length line trickling in is still recognised.
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let payload = br#"{"head":{"module":"s3","method":"x"}}"#;
    let mut wire = Vec::new();
    write_frame(&mut wire, payload).unwrap();
    stream.write_all(&wire[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&wire[5..]).unwrap();
    let reply: Value = serde_json::from_slice(&read_frame(&mut stream, 1 << 20).unwrap().unwrap()).unwrap();
    assert_eq!(reply["port"], backend.addr.port());
}

#[test]
fn with_raw_frames_off_a_frame_never_reaches_a_backend() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[backend.addr], "")]));
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write_frame(&mut stream, br#"{"head":{"module":"s3","method":"x"}}"#).unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    if !bytes.is_empty() {
        assert_eq!(support::parse_response(&bytes).unwrap().status, 400);
    }
    assert_eq!(backend.requests(), 0);
    assert_eq!(backend.connections(), 0);
}

#[test]
fn shutdown_answers_the_frame_in_flight_and_limits_hold() {
    let slow = Backend::start(Style::Slow(Duration::from_millis(800)));
    let proxy = Proxy::start(
        "raw_frames = true\nmax_connections = 1",
        &config(&[socket_module("slow", &[slow.addr], "")]),
    );
    let addr = proxy.addr;
    // The harness's readiness probe held the only slot for a moment; the first try may be turned away.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut client = loop {
        let mut client = BlockingClient::connect(addr).unwrap();
        match client.call_module("slow", "warm", json!(null)) {
            Ok(_) => break client,
            Err(error) if Instant::now() < deadline => {
                eprintln!("retrying after {error}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("{error}"),
        }
    };

    // The raw-frame client holds the only connection slot.
    assert_eq!(send_raw(addr, &http("GET", "/", &[], b"")).status, 503);

    let call = std::thread::spawn(move || client.call_module("slow", "x", json!(1)));
    std::thread::sleep(Duration::from_millis(200));
    let status = proxy.terminate();
    let reply = call.join().unwrap().expect("the frame in flight is answered");
    assert_eq!(reply["echo"]["data"], 1);
    assert!(status.success(), "{status:?}");
}

#[test]
fn module_policy_and_head_rules_hold_for_raw_frames_too() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let shaped = socket_module(
        "shaped",
        &[backend.addr],
        ", head = { token = \"header:Authorization\", client_ip = \"remote_addr\", request_id = \"generate\" }",
    );
    let limited = socket_module("limited", &[backend.addr], ", rate_limit = { rate = 0.5, burst = 2 }");
    let proxy = Proxy::start(
        "raw_frames = true",
        &format!("{}\n[log]\naccess_format = \"json\"\n", config(&[shaped, limited])),
    );
    let mut client = raw_client(&proxy);

    // A raw-frame client has no headers: it cannot forge what the proxy would have set from them.
    let forged = br#"{"head":{"module":"shaped","method":"x","token":"forged","client_ip":"6.6.6.6","request_id":"mine","keep":1},"data":2}"#;
    let reply: Value = serde_json::from_slice(&client.call_raw(forged).unwrap()).unwrap();
    let head = &reply["echo"]["head"];
    assert_eq!(head.get("token"), None, "{head}");
    assert_eq!(head["client_ip"], "127.0.0.1");
    let id = head["request_id"].as_str().unwrap();
    assert!(id.len() == 32 && id != "mine", "{id}");
    assert_eq!(
        (head["keep"].clone(), reply["echo"]["data"].clone()),
        (json!(1), json!(2))
    );
    let node = backend.addr.to_string();
    assert!(
        proxy.access_json().iter().any(|line| line["path"] == "/shaped"
            && line["frame_method"] == "x"
            && line["node"] == node.as_str()
            && line["status"] == 200
            && line["bytes_out"].is_u64()),
        "{}",
        proxy.access_log()
    );

    // The burst passes, the next is refused in the protocol, and the connection lives on.
    for _ in 0..2 {
        client.call_module("limited", "x", json!(null)).unwrap();
    }
    let refused = client.call_module("limited", "x", json!(null)).unwrap_err();
    assert_eq!(refused.code(), Some("too_many_requests"), "{refused}");
    client.call_module("shaped", "x", json!(null)).unwrap();
}

#[test]
fn each_frame_counts_in_its_modules_metrics() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let limited = socket_module("limited", &[backend.addr], ", rate_limit = { rate = 0.5, burst = 2 }");
    let gone = socket_module("gone", &[dead], "");
    let proxy = Proxy::start("raw_frames = true", &config(&[limited, gone]));
    let mut client = raw_client(&proxy);

    for _ in 0..2 {
        client.call_module("limited", "x", json!(null)).unwrap();
    }
    client.call_module("limited", "x", json!(null)).unwrap_err();
    client.call_module("gone", "x", json!(null)).unwrap_err();

    // Counted by the status an HTTP client would have had: 200, 429 and 502.
    let text = String::from_utf8(proxy.get("/module_proxy_inner_mod/metrics", &[]).body).unwrap();
    for counted in [
        r#"modproxy_requests_total{module="limited",class="2xx"} 2"#,
        r#"modproxy_requests_total{module="limited",class="4xx"} 1"#,
        r#"modproxy_requests_total{module="gone",class="5xx"} 1"#,
    ] {
        assert!(text.contains(counted), "{counted} in\n{text}");
    }
}

#[test]
fn client_text_cannot_forge_log_lines() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "raw_frames = true",
        &config(&[socket_module("s3", &[backend.addr], "")]),
    );
    let mut client = raw_client(&proxy);
    let forged = "\r\nFORGED 127.0.0.1 GET /admin status=200";
    // A method reaches the access line; an unknown module, the refusal's message.
    let frames = [
        json!({ "head": { "module": "s3", "method": format!("add{forged}") }, "data": 1 }),
        json!({ "head": { "module": format!("nope{forged}"), "method": "add" } }),
    ];
    for frame in frames {
        let _ = client.call_raw(&serde_json::to_vec(&frame).unwrap());
    }
    for log in [proxy.log(), proxy.access_log()] {
        assert!(log.contains("FORGED"), "the requests were logged: {log}");
        assert!(
            log.lines().all(|line| !line.starts_with("FORGED")),
            "a client wrote a line of its own:\n{log}"
        );
    }
}
