//! The operator's status page and its `status.json`, through the real binary.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::config::{config, socket_module};
use support::socket_backend::{envelope, Backend, Style};
use support::{free_port, Proxy};

fn status(proxy: &Proxy) -> Value {
    let response = proxy.get("/module_proxy_inner_mod/status.json", &[]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    serde_json::from_str(&response.text()).expect("status.json is JSON")
}

fn module<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no module {name} in {status}"))
}

/// Polls status.json until `done` holds for it, for up to five seconds.
fn wait_for(proxy: &Proxy, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = status(proxy);
        if done(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "{what} never came: {seen:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn status_json_shows_traffic_and_a_killed_node_masked() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "",
        &format!(
            "{}module_html = [ {{ module = \"site\", path = \"/tmp\" }} ]\n",
            config(&[socket_module("s3", &[backend.addr], "fail_timeout = 30")])
        ),
    );

    let before = status(&proxy);
    assert_eq!(before["version"], 1);
    assert_eq!(before["window_seconds"], 60);
    assert!(before["time"].as_u64().unwrap() > 1_700_000_000);
    let s3 = module(&before, "s3");
    assert_eq!(s3["role"], "socket");
    assert_eq!(s3["last_minute"]["requests"], 0);
    assert!(s3["last_minute"]["p50_ms"].is_null());
    assert_eq!(s3["per_second"].as_array().unwrap().len(), 60);
    let node = &s3["nodes"][0];
    assert_eq!(node["address"], backend.addr.to_string());
    assert_eq!(node["state"], "up");
    assert!(node.get("masked_until_ms").is_some() && node.get("lanes").is_some());
    let site = module(&before, "site");
    assert_eq!(site["role"], "html");
    assert_eq!(site["nodes"], json!([]));

    for _ in 0..5 {
        assert_eq!(proxy.post("/s3/", &[], &envelope("x", json!(1))).status, 200);
    }
    let after = wait_for(&proxy, "five requests in the last minute", |seen| {
        module(seen, "s3")["last_minute"]["requests"] == 5
    });
    let s3 = module(&after, "s3");
    assert_eq!(s3["last_minute"]["error_rate"], 0.0);
    assert!(s3["last_minute"]["rps"].as_f64().unwrap() > 0.0);
    assert!(s3["last_minute"]["p99_ms"].as_f64().unwrap() > 0.0);
    let points = s3["per_second"].as_array().unwrap();
    let counted: u64 = points.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(counted, 5, "the per-second points add up to the total");
    assert_eq!(s3["nodes"][0]["connections"], 1, "the pooled connection");

    backend.kill();
    assert_eq!(proxy.post("/s3/", &[], &envelope("x", json!(1))).status, 502);
    let masked = wait_for(&proxy, "the killed node masked and its error counted", |seen| {
        module(seen, "s3")["last_minute"]["requests"] == 6
    });
    let s3 = module(&masked, "s3");
    assert_eq!(s3["nodes"][0]["state"], "masked");
    // Masked for fail_timeout from the failure: until then, in Unix milliseconds.
    let until = s3["nodes"][0]["masked_until_ms"]
        .as_u64()
        .expect("a masked node says until when");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(until > now + 1_000 && until <= now + 60_000, "{until} vs {now}");
    let rate = s3["last_minute"]["error_rate"].as_f64().unwrap();
    assert!((rate - 1.0 / 6.0).abs() < 1e-9, "{rate}");
}

#[test]
fn the_status_page_is_served_to_operators_only() {
    let proxy = Proxy::start("", "");
    let page = proxy.get("/module_proxy_inner_mod/status", &[]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("status.json"), "the page polls status.json");
    for outside in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !page.text().contains(outside),
            "the page loads nothing from elsewhere ({outside})"
        );
    }

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
    let outside: SocketAddr = format!("{own_ip}:{port}").parse().unwrap();
    for path in [
        "/module_proxy_inner_mod/status.json",
        "/module_proxy_inner_mod/status",
        "/module_proxy_inner_mod/status.html",
    ] {
        let response = support::send_raw(outside, &support::http("GET", path, &[], b""));
        assert_eq!(response.status, 403, "{path} from a non-loopback client");
    }
    assert!(proxy.log().contains("status refused"));
    assert_eq!(
        proxy.get("/module_proxy_inner_mod/status.json", &[]).status,
        200,
        "loopback may read it"
    );
}

fn non_loopback_ip() -> Option<std::net::IpAddr> {
    // The address the kernel would use to reach a public host (nothing is sent).
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn lanes_and_requests_in_flight_show_while_a_pipelined_node_works() {
    let backend = Backend::start(Style::Sequenced(Duration::from_millis(1500)));
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[backend.addr], "pipeline = 4")]));
    let addr = proxy.addr;
    let calls: Vec<_> = (0..6)
        .map(|i| {
            std::thread::spawn(move || {
                support::send_raw(addr, &support::http("POST", "/s3/", &[], &envelope("x", json!(i)))).status
            })
        })
        .collect();

    let busy = wait_for(&proxy, "requests on lanes", |seen| {
        let node = &module(seen, "s3")["nodes"][0];
        node["in_flight"].as_u64() >= Some(1) && node["lane_requests"].as_u64() >= Some(1)
    });
    let node = &module(&busy, "s3")["nodes"][0];
    assert!(node["lanes"].as_u64() >= Some(1), "{node}");
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    let gauge = |name: &str| {
        let prefix = format!("modproxy_{name}{{module=\"s3\",node=\"{}\"}} ", backend.addr);
        let line = metrics.lines().find(|line| line.starts_with(&prefix));
        line.and_then(|line| line[prefix.len()..].parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert!(gauge("lanes_open") >= 1 && gauge("lane_requests") >= 1 && gauge("node_in_flight") >= 1);

    for call in calls {
        assert_eq!(call.join().unwrap(), 200);
    }
    let idle = wait_for(&proxy, "the lanes emptied", |seen| {
        let node = &module(seen, "s3")["nodes"][0];
        node["in_flight"] == 0 && node["lane_requests"] == 0
    });
    assert!(
        module(&idle, "s3")["nodes"][0]["lanes"].as_u64() >= Some(1),
        "idle lanes stay open"
    );
}
