//! Operating the proxy: Prometheus metrics and SIGHUP reload, through the real binary.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use support::config::{config, socket_module};
use support::socket_backend::{envelope, Backend, Style};
use support::{free_port, Proxy};

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[test]
fn metrics_count_requests_latency_nodes_and_connections() {
    let go = Backend::start(Style::SpaceKeepAlive);
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start(
        "",
        &config(&[socket_module("s3", &[go.addr], ""), socket_module("gone", &[dead], "")]),
    );
    for _ in 0..3 {
        assert_eq!(proxy.post("/s3/", &[], &envelope("x", json!(1))).status, 200);
    }
    assert_eq!(proxy.get("/s3/", &[]).status, 405);
    assert_eq!(proxy.post("/gone/", &[], &envelope("x", json!(1))).status, 502);
    assert_eq!(proxy.get("/missing.html", &[]).status, 404);

    // Three keep-alive connections held open (each has finished a request, so the server has them).
    let held: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(proxy.addr).unwrap();
            std::io::Write::write_all(&mut stream, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut buf).unwrap();
            stream
        })
        .collect();
    let page = proxy.get("/module_proxy_inner_mod/metrics", &[]);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = page.text();
    assert_eq!(
        metric(&text, r#"modproxy_requests_total{module="s3",class="2xx"}"#),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"modproxy_requests_total{module="s3",class="4xx"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, r#"modproxy_requests_total{module="gone",class="5xx"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, r#"modproxy_requests_total{module="-",class="4xx"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, r#"modproxy_request_duration_seconds_count{module="s3"}"#),
        Some(4.0)
    );
    assert_eq!(
        metric(&text, &format!(r#"modproxy_node_up{{module="s3",node="{}"}}"#, go.addr)),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, &format!(r#"modproxy_node_up{{module="gone",node="{dead}"}}"#)),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!(r#"modproxy_pooled_connections{{module="s3",node="{}"}}"#, go.addr)
        ),
        Some(1.0)
    );
    // The held ones and the scrape's own; connections just closed may linger a moment, so a lower bound.
    let open = metric(&text, "modproxy_client_connections").unwrap();
    assert!(open >= 4.0, "{open} open client connections");
    drop(held);
}

#[test]
fn metrics_are_for_loopback_unless_listed() {
    // The proxy listens on every address; reach it from a non-loopback address of this machine if any.
    let Some(own_ip) = non_loopback_ip() else {
        eprintln!("no non-loopback IPv4 address on this machine; only the loopback half is tested");
        return;
    };
    let port = free_port();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("conf")).unwrap();
    std::fs::write(
        home.path().join("conf/default.toml"),
        format!("[server]\nport = {port}\nlisten = \"0.0.0.0\"\n"),
    )
    .unwrap();
    let proxy = Proxy::start_in(home, port);
    assert_eq!(proxy.get("/module_proxy_inner_mod/metrics", &[]).status, 200);
    let outside: SocketAddr = format!("{own_ip}:{port}").parse().unwrap();
    let response = support::send_raw(
        outside,
        &support::http("GET", "/module_proxy_inner_mod/metrics", &[], b""),
    );
    assert_eq!(response.status, 403, "a non-loopback client is refused");
    assert!(proxy.log().contains("metrics refused"));

    // Listed (by a reload), it is let in.
    let listed = format!("[server]\nport = {port}\nlisten = \"0.0.0.0\"\nmetrics_allow = [\"{own_ip}/32\"]\n");
    std::fs::write(proxy.config_path(), listed).unwrap();
    proxy.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    let response = support::send_raw(
        outside,
        &support::http("GET", "/module_proxy_inner_mod/metrics", &[], b""),
    );
    assert_eq!(response.status, 200, "a listed client may read the metrics");
}

fn non_loopback_ip() -> Option<std::net::IpAddr> {
    // The address the kernel would use to reach a public host (nothing is sent).
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn sighup_applies_a_valid_config_and_refuses_a_bad_one() {
    let first = Backend::start(Style::SpaceKeepAlive);
    let second = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[first.addr], "")]));
    let port_of =
        |proxy: &Proxy, module: &str| proxy.post(module, &[], &envelope("x", json!(1))).json()["port"].clone();
    assert_eq!(port_of(&proxy, "/s3/"), json!(first.addr.port()));

    // Valid: s3 moves to the second backend and a new module appears.
    let server = std::fs::read_to_string(proxy.config_path()).unwrap();
    let server = &server[..server.find("[module]").unwrap()];
    let new_config = format!(
        "{server}{}",
        config(&[
            socket_module("s3", &[second.addr], ""),
            socket_module("s4", &[first.addr], "")
        ])
    );
    std::fs::write(proxy.config_path(), &new_config).unwrap();
    proxy.signal("HUP");
    wait_for(|| port_of(&proxy, "/s3/") == json!(second.addr.port()));
    assert_eq!(port_of(&proxy, "/s4/"), json!(first.addr.port()));

    // Invalid: refused with a log line naming the error; the previous config keeps serving.
    std::fs::write(proxy.config_path(), format!("{new_config}\n[server]\nbogus = 1\n")).unwrap();
    std::fs::write(proxy.config_path(), new_config.replace("forward_pass", "forward_pas")).unwrap();
    proxy.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(port_of(&proxy, "/s3/"), json!(second.addr.port()));
    let log = proxy.log();
    assert!(
        log.contains("reload refused") && log.contains("unknown key 'forward_pas'"),
        "{log}"
    );
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    assert_eq!(
        metric(&metrics, r#"modproxy_config_reloads_total{result="ok"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, r#"modproxy_config_reloads_total{result="refused"}"#),
        Some(1.0)
    );
}

#[test]
fn reload_does_not_drop_requests_in_flight() {
    let slow = Backend::start(Style::Slow(Duration::from_millis(800)));
    let fast = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[slow.addr], "")]));
    let addr = proxy.addr;
    let in_flight = std::thread::spawn(move || {
        support::send_raw(addr, &support::http("POST", "/s3/", &[], &envelope("x", json!(1))))
    });
    std::thread::sleep(Duration::from_millis(200));
    let server = std::fs::read_to_string(proxy.config_path()).unwrap();
    let server = &server[..server.find("[module]").unwrap()];
    std::fs::write(
        proxy.config_path(),
        format!("{server}{}", config(&[socket_module("s3", &[fast.addr], "")])),
    )
    .unwrap();
    proxy.signal("HUP");
    let response = in_flight.join().unwrap();
    assert_eq!(response.status, 200, "the request in flight finished on the old config");
    assert_eq!(response.json()["port"], json!(slow.addr.port()));
    assert_eq!(
        proxy.post("/s3/", &[], &envelope("x", json!(1))).json()["port"],
        json!(fast.addr.port())
    );
}

#[test]
fn the_access_log_can_be_switched_off() {
    let go = Backend::start(Style::SpaceKeepAlive);
    let modules = config(&[socket_module("s3", &[go.addr], "")]);
    let quiet = Proxy::start("", &format!("{modules}\n[log]\naccess = false\n"));
    let chatty = Proxy::start("", &modules);
    for proxy in [&quiet, &chatty] {
        assert_eq!(proxy.post("/s3/", &[], &envelope("x", json!(1))).status, 200);
    }
    assert!(
        !quiet.access_log().contains("POST /s3/"),
        "no access line with [log] access = false"
    );
    assert!(chatty.access_log().contains("POST /s3/"), "an access line by default");
    assert!(
        !chatty.log().contains("POST /s3/"),
        "the main log keeps errors and lifecycle events, not access lines"
    );
}

fn wait_for(mut ok: impl FnMut() -> bool) {
    for _ in 0..100 {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("condition not met within 5 s");
}
