//! `[[stream]]` TCP forwarding against the real binary and real TCP nodes.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{free_port, Proxy};

/// A TCP node that echoes every byte and, when the client's side ends, writes a trailer naming how many
/// bytes it received, then closes. The trailer proves that the end of stream travelled through the proxy.
struct Echo {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    killed: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (c, k, o) = (connections.clone(), killed.clone(), open.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if k.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                o.lock().unwrap().push(stream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut total = 0usize;
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                total += n;
                                if stream.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        }
                    }
                    let _ = stream.write_all(trailer(total).as_bytes());
                    let _ = stream.shutdown(Shutdown::Write);
                });
            }
        });
        Echo {
            addr,
            connections,
            killed,
            open,
        }
    }

    /// Dies like a crashed process: the port closes and open connections are reset.
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(self.addr);
        std::thread::sleep(Duration::from_millis(50));
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn trailer(received: usize) -> String {
    format!("|eof after {received} bytes")
}

fn stream_section(listen: SocketAddr, nodes: &[SocketAddr], extra: &str) -> String {
    let nodes: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    format!(
        "[[stream]]\nlisten = \"{listen}\"\nproxy_pass = \"{}\"\n{extra}\n",
        nodes.join(", ")
    )
}

fn listen_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// Pseudo-random bytes (xorshift), so a shifted or dropped chunk cannot go unnoticed.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a, as a checksum for messages.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Sends `data` through the stream while reading the echo on another thread, then half-closes and reads
/// to the end. Returns what came back and how long it took.
fn round_trip(listen: SocketAddr, data: &Arc<Vec<u8>>) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(listen).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let data = Arc::clone(data);
    let sending = std::thread::spawn(move || {
        for chunk in data.chunks(256 * 1024) {
            writer.write_all(chunk).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    sending.join().unwrap();
    (back, started.elapsed())
}

fn assert_intact(back: &[u8], sent: &[u8]) {
    let expected_trailer = trailer(sent.len());
    assert_eq!(
        back.len(),
        sent.len() + expected_trailer.len(),
        "everything sent came back, then the trailer"
    );
    assert_eq!(checksum(&back[..sent.len()]), checksum(sent), "echo checksum");
    assert_eq!(&back[sent.len()..], expected_trailer.as_bytes());
}

fn metric(proxy: &Proxy, line_prefix: &str) -> u64 {
    let page = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    page.lines()
        .find_map(|line| line.strip_prefix(line_prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in:\n{page}"))
}

#[test]
fn ten_megabytes_both_ways_through_a_node_failure() {
    let (a, b) = (Echo::start(), Echo::start());
    let dead: SocketAddr = listen_addr();
    let listen = listen_addr();
    let proxy = Proxy::start("", &stream_section(listen, &[dead, a.addr, b.addr], ""));
    let data = Arc::new(payload(10 * 1024 * 1024, 7));

    let (back, took) = round_trip(listen, &data);
    assert_intact(&back, &data);
    eprintln!("10 MiB each way through the stream: {took:?}");

    // One node crashes; the dead one was masked on first contact. Every later connection lands on b.
    a.kill();
    let b_before = b.connections();
    for _ in 0..3 {
        let (back, took) = round_trip(listen, &data);
        assert_intact(&back, &data);
        eprintln!("10 MiB each way after a node failure: {took:?}");
    }
    for i in 0..20 {
        let small = Arc::new(payload(1000 + i, i as u64));
        let (back, _) = round_trip(listen, &small);
        assert_intact(&back, &small);
    }
    assert!(b.connections() - b_before >= 22, "b took over (a had at most one more)");

    let label = format!("listen=\"{listen}\"");
    let up = metric(
        &proxy,
        &format!("modproxy_stream_bytes_total{{{label},direction=\"up\"}}"),
    );
    let down = metric(
        &proxy,
        &format!("modproxy_stream_bytes_total{{{label},direction=\"down\"}}"),
    );
    assert!(up >= 4 * 10 * 1024 * 1024, "{up}");
    assert!(down > up, "down carries the trailers too: {down} vs {up}");
    assert_eq!(
        metric(&proxy, &format!("modproxy_stream_connections_total{{{label}}}")),
        24
    );
    assert_eq!(
        metric(&proxy, &format!("modproxy_stream_unreachable_total{{{label}}}")),
        0
    );
    assert_eq!(
        metric(&proxy, &format!("modproxy_stream_open_connections{{{label}}}")),
        0
    );
    for (node, up) in [(dead, 0), (a.addr, 0), (b.addr, 1)] {
        let node_up = format!("modproxy_stream_node_up{{{label},node=\"{node}\"}}");
        assert_eq!(metric(&proxy, &node_up), up, "{node}");
    }
    let log = proxy.log();
    assert!(log.contains("stream connect failed; node masked"), "{log}");
    assert!(log.contains(&format!("STREAM {listen} node={}", b.addr)), "{log}");
}

#[test]
fn half_close_keeps_the_other_direction_flowing() {
    let echo = Echo::start();
    // A node that speaks first and closes its side at once, then keeps reading what the client sends.
    let greeter = TcpListener::bind("127.0.0.1:0").unwrap();
    let greeter_addr = greeter.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(usize::MAX));
    let got = Arc::clone(&received);
    std::thread::spawn(move || {
        let (mut stream, _) = greeter.accept().unwrap();
        stream.write_all(b"hello, then silence").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).unwrap();
        got.store(all.len(), Ordering::SeqCst);
    });
    let (to_echo, to_greeter) = (listen_addr(), listen_addr());
    let proxy = Proxy::start(
        "",
        &(stream_section(to_echo, &[echo.addr], "") + &stream_section(to_greeter, &[greeter_addr], "")),
    );

    // The client ends its side first and still receives everything the node sends afterwards.
    let mut client = TcpStream::connect(to_echo).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    client.write_all(b"last words").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, [&b"last words"[..], trailer(10).as_bytes()].concat());

    // The node ends its side first and still receives everything the client sends afterwards.
    let mut client = TcpStream::connect(to_greeter).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = Vec::new();
    client.read_to_end(&mut greeting).unwrap();
    assert_eq!(greeting, b"hello, then silence");
    let late = payload(300 * 1024, 3);
    client.write_all(&late).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::SeqCst) == usize::MAX && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(received.load(Ordering::SeqCst), late.len());
    drop(proxy);
}

#[test]
fn idle_connections_are_closed_and_busy_ones_are_not() {
    let echo = Echo::start();
    let listen = listen_addr();
    let _proxy = Proxy::start("", &stream_section(listen, &[echo.addr], "idle_timeout = 1"));

    // Busy: a byte every 300 ms for 2.4 s, well past the idle timeout in total.
    let mut busy = TcpStream::connect(listen).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut byte = [0u8; 1];
    for i in 0..8u8 {
        busy.write_all(&[i]).unwrap();
        busy.read_exact(&mut byte).unwrap();
        assert_eq!(byte[0], i);
        std::thread::sleep(Duration::from_millis(300));
    }

    // Then quiet: closed about a second later, without a trailer (the node never saw an end of stream
    // from the client; the proxy closed both sides).
    let quiet_since = Instant::now();
    let mut rest = Vec::new();
    let _ = busy.read_to_end(&mut rest);
    let waited = quiet_since.elapsed();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn all_nodes_down_closes_the_client_promptly() {
    let (dead1, dead2) = (listen_addr(), listen_addr());
    let listen = listen_addr();
    let proxy = Proxy::start("", &stream_section(listen, &[dead1, dead2], ""));
    for _ in 0..3 {
        let started = Instant::now();
        let mut client = TcpStream::connect(listen).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        match client.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("{n} bytes from nowhere"),
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted),
                "{e}"
            ),
        }
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    }
    let label = format!("listen=\"{listen}\"");
    assert_eq!(
        metric(&proxy, &format!("modproxy_stream_unreachable_total{{{label}}}")),
        3
    );
    for dead in [dead1, dead2] {
        let node_up = format!("modproxy_stream_node_up{{{label},node=\"{dead}\"}}");
        assert_eq!(metric(&proxy, &node_up), 0, "a node that refused is masked");
    }
    assert!(proxy.log().contains("no stream node accepted a connection"));
}

#[test]
fn a_taken_stream_port_is_a_startup_error_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("conf")).unwrap();
    std::fs::write(
        home.path().join("conf/default.toml"),
        format!(
            "[server]\nport = {}\nlisten = \"127.0.0.1\"\n{}",
            free_port(),
            stream_section(taken_addr, &[taken_addr], "")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_modproxy"))
        .arg("--home")
        .arg(home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("modproxy kept running with its stream port taken");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("cannot listen on {taken_addr} ([[stream]] listen")),
        "{stderr}"
    );
}

#[test]
fn streams_are_not_reloaded_and_say_so() {
    let echo = Echo::start();
    let listen = listen_addr();
    let proxy = Proxy::start("", &stream_section(listen, &[echo.addr], ""));
    let config = std::fs::read_to_string(proxy.config_path()).unwrap();
    std::fs::write(
        proxy.config_path(),
        config.replace("[[stream]]\n", "[[stream]]\nidle_timeout = 5\n"),
    )
    .unwrap();
    proxy.signal("HUP");
    let small = Arc::new(payload(100, 1));
    let (back, _) = round_trip(listen, &small);
    assert_intact(&back, &small);
    let log = proxy.log();
    assert!(log.contains("[[stream]] sections take effect only on restart"), "{log}");
}
