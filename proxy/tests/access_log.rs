//! The access log file, through the real binary: nginx's `combined` by default, JSON lines when asked,
//! its own file (the main log keeps errors and lifecycle events), or none.

mod support;

use regex::Regex;
use serde_json::json;
use support::config::{config, socket_module};
use support::socket_backend::{envelope, Backend, Style};
use support::Proxy;

/// nginx's `combined` format, field by field, as log parsers read it.
fn combined() -> Regex {
    Regex::new(concat!(
        r#"^(?P<remote_addr>\S+) - (?P<remote_user>\S+) "#,
        r#"\[(?P<time_local>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "#,
        r#""(?P<request>[^"]*)" (?P<status>\d{3}) (?P<body_bytes_sent>\d+|-) "#,
        r#""(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)"$"#,
    ))
    .unwrap()
}

#[test]
fn combined_by_default_in_its_own_file() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[backend.addr], "")]));
    assert_eq!(proxy.post("/s3/", &[], &envelope("x", json!(1))).status, 200);
    assert_eq!(proxy.get("/missing\"quote.html", &[]).status, 404);

    let log = proxy.access_log();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let format = combined();
    let fields: Vec<_> = lines
        .iter()
        .map(|line| format.captures(line).unwrap_or_else(|| panic!("not combined: {line}")))
        .collect();
    assert_eq!(&fields[0]["remote_addr"], "127.0.0.1");
    assert_eq!(&fields[0]["request"], "POST /s3/ HTTP/1.1");
    assert_eq!(&fields[0]["status"], "200");
    assert!(fields[0]["body_bytes_sent"].parse::<u64>().unwrap() > 0);
    assert_eq!(&fields[1]["request"], r"GET /missing\x22quote.html HTTP/1.1");
    assert_eq!(&fields[1]["status"], "404");
    assert!(!proxy.log().contains("POST /s3/"), "no access line in the main log");
}

#[test]
fn json_lines_with_module_node_and_request_id() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "",
        &format!(
            "{}\n[log]\naccess = \"elsewhere/requests.log\"\naccess_format = \"json\"\n",
            config(&[socket_module("s3", &[backend.addr], "")])
        ),
    );
    let answer = proxy.post("/s3/", &[("X-Request-Id", "trace-me-1")], &envelope("x", json!(1)));
    assert_eq!(answer.status, 200);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let path = proxy.home.path().join("elsewhere/requests.log");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = &lines[0];
    for key in [
        "time",
        "client",
        "method",
        "path",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "module",
        "node",
        "request_id",
        "upstream_ms",
    ] {
        assert!(line.get(key).is_some(), "no {key} in {line}");
    }
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(
        (line["method"].as_str(), line["path"].as_str()),
        (Some("POST"), Some("/s3/"))
    );
    assert_eq!(line["status"], 200);
    assert_eq!(line["module"], "s3");
    assert_eq!(line["node"], backend.addr.to_string());
    assert_eq!(line["request_id"], "trace-me-1");
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn off_writes_no_file() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "",
        &format!(
            "{}\n[log]\naccess = \"off\"\n",
            config(&[socket_module("s3", &[backend.addr], "")])
        ),
    );
    assert_eq!(proxy.post("/s3/", &[], &envelope("x", json!(1))).status, 200);
    assert_eq!(proxy.access_log(), "");
    assert!(!proxy.home.path().join("logs/access.log").exists());
}

#[test]
fn referer_user_agent_sizes_and_the_nodes_time_are_logged() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "",
        &format!(
            "{}\n[log]\naccess_format = \"json\"\n",
            config(&[socket_module("s3", &[backend.addr], "")])
        ),
    );
    let body = envelope("x", json!(1));
    let headers = [
        ("Referer", "https://shop.example/cart?x=\"1\""),
        ("User-Agent", "probe/1.0"),
    ];
    assert_eq!(proxy.post("/s3/", &headers, &body).status, 200);
    assert_eq!(proxy.get("/index.html", &headers).status, 200);

    let lines = proxy.access_json();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (posted, static_get) = (&lines[0], &lines[1]);
    assert_eq!(posted["bytes_in"], body.len() as u64);
    assert_eq!(posted["referer"], "https://shop.example/cart?x=\"1\"");
    assert_eq!(posted["user_agent"], "probe/1.0");
    let upstream = posted["upstream_ms"]
        .as_f64()
        .expect("a node answered: upstream_ms is a number");
    assert!(
        upstream > 0.0 && upstream <= posted["duration_ms"].as_f64().unwrap(),
        "{posted}"
    );
    // No node answers a static file, and a GET declares no body.
    assert_eq!(static_get["upstream_ms"], serde_json::Value::Null);
    assert_eq!(static_get["bytes_in"], serde_json::Value::Null);
    assert_eq!(static_get["user_agent"], "probe/1.0");
}

#[test]
fn combined_names_the_protocol_referer_and_user_agent() {
    let proxy = Proxy::start("", &config(&[]));
    let headers = [("Referer", "https://shop.example/\"x\""), ("User-Agent", "probe/1.0")];
    assert_eq!(proxy.get("/index.html", &headers).status, 200);
    let addr = proxy.addr;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = http::Request::get(format!("http://{addr}/index.html"))
            .header("user-agent", "h2-probe")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        sender.send_request(request).await.unwrap().status()
    });
    assert_eq!(status, 200);

    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = proxy.access_log();
    let format = combined();
    let fields: Vec<_> = log
        .lines()
        .map(|line| format.captures(line).unwrap_or_else(|| panic!("not combined: {line}")))
        .collect();
    assert_eq!(fields.len(), 2, "{log}");
    assert_eq!(&fields[0]["request"], "GET /index.html HTTP/1.1");
    assert_eq!(&fields[0]["http_referer"], r"https://shop.example/\x22x\x22");
    assert_eq!(&fields[0]["http_user_agent"], "probe/1.0");
    assert_eq!(&fields[1]["request"], "GET /index.html HTTP/2.0");
    assert_eq!(&fields[1]["http_referer"], "-");
    assert_eq!(&fields[1]["http_user_agent"], "h2-probe");
}
