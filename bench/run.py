"""`make bench`: modproxy against nginx and hand-written peers, row by row (see bench/README.md).

Every contestant runs on 127.0.0.1 on a free port. The load generator (wrk -t1, or frameload for the
socket protocol; both one thread) is pinned to CPU 0; the whole server side — modproxy and its backend, or
nginx and its backend — to CPU 1, one worker thread or process each. Each row's contestant and peer are
warmed up, then measured in interleaved rounds (A B A B A B); the table shows medians, and the ratio is
contestant ÷ peer from the same run.

Environment: BENCH_SECONDS (10), BENCH_ROUNDS (3), BENCH_WARMUP (3), BENCH_ROWS (every row; "7" picks 7a to 7c),
BENCH_CONNECTIONS (64), BENCH_IDLE (5000, row 8), BENCH_LOG_LEVEL (modproxy's [log] level, "warn":
nginx runs with access_log off), BENCH_LABEL (a note for the run's heading), BENCH_RESULTS (the file
to write, bench/RESULTS.md), and, to run another build of an SDK, BENCH_PYTHON_SDK (a Python whose venv
has it) and BENCH_NODE_SDK (a directory holding the Node package).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
# tests/stack.py: how every harness writes modproxy's HOME, starts a server and waits until it answers.
import stack
from stack import free_port

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
PYTHON = ROOT / ".venv" / "bin" / "python"
# The interpreter that runs the Python SDK contestant: another venv's, to compare two builds of the SDK.
PYTHON_SDK = Path(os.environ.get("BENCH_PYTHON_SDK", PYTHON))

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "3"))
# Unset: every row of ROW_PLAN. A bare number picks its lettered rows only where no row has that id
# ("7" is 7a, 7b and 7c, but "3" is row 3 alone, not 3b).
ROWS = {r.strip() for r in os.environ.get("BENCH_ROWS", "").split(",") if r.strip()}
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
IDLE_CONNECTIONS = int(os.environ.get("BENCH_IDLE", "5000"))
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "warn")
ACCESS_LOG = "logs/access.log" if LOG_LEVEL in ("info", "debug") else "off"
LABEL = os.environ.get("BENCH_LABEL", "")
# A previous build's proxy binary (`make bench BENCH_BASELINE=<git ref>` builds one): the proxy rows run it
# too, in the same rounds, and report this build ÷ that one.
BASELINE = os.environ.get("BENCH_BASELINE_BIN", "")
BASELINE_LABEL = os.environ.get("BENCH_BASELINE", "baseline")
RESULTS = Path(os.environ.get("BENCH_RESULTS", BENCH / "RESULTS.md"))

LOAD_CPU = "0"
SERVER_CPU = "1"
# One worker thread for every tokio runtime on the server side (modproxy, the SDKs, the Rust peers).
SERVER_ENV = {"TOKIO_WORKER_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# The static files rows 2 and 2b to 2d download, in MiB (`<n>mb.bin`).
STATIC_SIZES_MIB = (1, 10, 100)
# HTTP/2 rows: streams open at once on each of the CONNECTIONS (h2load -m).
H2_STREAMS = 10
# The unit of the latency rows (18a, 18b): their result is the p99, and lower is better.
P99 = "ms p99"

# The request every POST row sends (101 bytes), and what every echo replies.
BODY = (
    '{"head":{"method":"echo","token":"bench"},"data":{"user":"ada","id":12345,"tags":["a","b"],"ok":true}}'
)
ECHOED = json.loads(BODY)["data"]

START = "<!-- bench/run.py writes the latest run below this line -->"
END = "<!-- end of the latest run -->"


# --- processes -------------------------------------------------------------------------------------


class Processes:
    """Everything the harness starts, each in its own process group, so that all of it can be killed."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], cpu: str = SERVER_CPU) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            ["taskset", "-c", cpu, *argv],
            cwd=ROOT,
            env={**os.environ, **SERVER_ENV},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.running.append((name, proc))
        return proc

    def log_tail(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop_all(self) -> None:
        for _, proc in self.running:
            signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for _, proc in self.running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=5)
        self.running.clear()


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


# --- memory ----------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (nginx's worker, a shell's child)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and everything below it."""
    total = 0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / CLOCK_TICKS


def tree_rss_mb(pid: int) -> float:
    return sum(rss_mb(p) for p in descendants(pid))


class RssSampler:
    """Samples the server side's resident memory every 100 ms while a round runs."""

    def __init__(self, front: int, others: list[int]) -> None:
        self.front, self.others = front, others
        self.front_samples: list[float] = []
        self.total_samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            front = tree_rss_mb(self.front)
            self.front_samples.append(front)
            self.total_samples.append(front + sum(tree_rss_mb(p) for p in self.others))
            if self._stop.wait(0.1):
                return


# --- load generators -------------------------------------------------------------------------------


def wrk(
    url: str,
    seconds: float,
    connections: int = CONNECTIONS,
    body: str | None = None,
    headers: tuple[str, ...] = (),
) -> dict[str, float]:
    argv = [
        "taskset",
        "-c",
        LOAD_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "30s",
    ]
    for header in headers:
        argv += ["-H", header]
    argv += ["-s", str(BENCH / "wrk" / "load.lua"), url]
    env = {**os.environ, "BENCH_BODY": body or ""}
    out = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    return bench_json("wrk", out)


def tlsload(port: int, seconds: float, ca: Path) -> dict[str, float]:
    """New TLS connections, one GET of the 1 KB file each, from bench/tlsload (row 10): wrk's
    `Connection: close` on a client that costs less per connection than the servers it measures. The
    servers' certificate is checked against `ca`."""
    argv = ["taskset", "-c", LOAD_CPU, str(RELEASE / "tlsload"), f"127.0.0.1:{port}", "--ca", str(ca)]
    argv += ["--connections", str(CONNECTIONS), "--seconds", f"{seconds:g}", "--warmup", "0.5"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    return bench_json("tlsload", out)


def bench_json(tool: str, out: str) -> dict[str, float]:
    """The summary line `BENCH_JSON {...}` that bench/wrk/load.lua and tlsload print."""
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"{tool} printed no summary:\n{out}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    duration = raw["duration_us"] / 1e6
    return {
        "rps": raw["requests"] / duration,
        "mbps": raw["bytes"] / duration / 1e6,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": sum(raw[k] for k in ("connect", "read", "write", "status", "timeout")),
    }


def frameload(port: int, seconds: float) -> dict[str, float]:
    argv = ["taskset", "-c", LOAD_CPU, str(RELEASE / "frameload"), f"127.0.0.1:{port}"]
    argv += [
        "--connections",
        str(CONNECTIONS),
        "--seconds",
        f"{seconds:g}",
        "--warmup",
        "0.5",
        "--body",
        BODY,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    raw = json.loads(out.strip().splitlines()[-1])
    return {
        "rps": raw["rps"],
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": raw["errors"],
    }


def h2load(
    url: str,
    seconds: float,
    clients: int = CONNECTIONS,
    streams: int = H2_STREAMS,
    body: str | None = None,
    h1: bool = False,
    rps_per_client: int = 0,
) -> dict[str, float]:
    """h2load (one thread) for `seconds`: HTTP/2 (prior-knowledge h2c for http://, ALPN for https://), or
    HTTP/1.1 keep-alive with `h1`. `rps_per_client` makes it open loop: each client starts a request at
    that fixed rate, whether or not the last one is answered (up to `streams` at once). Latency comes from
    its per-request log."""
    with tempfile.TemporaryDirectory(prefix="bench-h2load-") as tmp:
        log = Path(tmp) / "requests.tsv"
        argv = ["taskset", "-c", LOAD_CPU, "h2load", "-t1", f"-c{clients}", f"-m{streams}"]
        argv += [f"-D{seconds:g}", "--log-file", str(log)]
        if h1:
            argv.append("--h1")
        if rps_per_client:
            argv.append(f"--rps={rps_per_client}")
        if body is not None:
            (Path(tmp) / "body.json").write_text(body)
            argv += ["-d", str(Path(tmp) / "body.json"), "-H", "content-type: application/json"]
        out = subprocess.run(
            [*argv, url], capture_output=True, text=True, timeout=seconds + 60, check=True
        ).stdout
        durations = sorted(
            int(fields[2])
            for fields in (line.split("\t") for line in log.read_text().splitlines())
            if len(fields) >= 3 and fields[1].startswith("2")
        )
    # "finished in 2.00s, 3988.00 req/s, 4.90MB/s"
    # "requests: 7976 total, 7984 started, 7976 done, 7976 succeeded, 0 failed, 0 errored, 0 timeout"
    lines = {line.split(maxsplit=1)[0]: line for line in out.splitlines() if line.strip()}
    if "finished" not in lines or "requests:" not in lines or not durations:
        raise RuntimeError(f"h2load answered nothing useful for {url}:\n{out[-1500:]}")
    finished = lines["finished"].split(",")
    counts = {
        part.split()[1]: int(part.split()[0]) for part in lines["requests:"].split(":", 1)[1].split(",")
    }
    rate, unit = finished[2].strip()[:-4], finished[2].strip()[-4:]
    return {
        "rps": float(finished[1].split()[0]),
        "mbps": float(rate) * {"GB/s": 1e3, "MB/s": 1.0, "KB/s": 1e-3}.get(unit, 1e-6),
        "p50_ms": durations[len(durations) // 2] / 1000,
        "p99_ms": durations[min(len(durations) - 1, len(durations) * 99 // 100)] / 1000,
        # Failed streams (status -1 in the log) and answers that are not 2xx: done, not in `durations`.
        "errors": counts["done"] - len(durations),
    }


# --- smoke checks: a contestant that answers wrongly is not measured ------------------------------


def need_h2load() -> None:
    if shutil.which("h2load") is None:
        raise RuntimeError("h2load is missing: `make h2-tools` installs it (Debian's nghttp2-client)")


def check_h2(url: str, body: str | None = None) -> None:
    """Ten requests over HTTP/2 (h2c prior knowledge, or ALPN for https://), all answered 2xx."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as data:
        data.write(body or "")
        data.flush()
        extra = ["-d", data.name, "-H", "content-type: application/json"] if body is not None else []
        argv = ["h2load", "-n10", "-c1", "-m2", *extra, url]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    if "10 2xx" not in out:
        raise RuntimeError(f"{url} over HTTP/2: not ten 2xx answers:\n{out[-800:]}")


def check_http_echo(url: str, body: str = BODY) -> None:
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        reply = json.loads(response.read())
    if reply != ECHOED:
        raise RuntimeError(f"{url} answered {reply!r}, not the echo {ECHOED!r}")


def check_http_get(url: str, size: int | None = None) -> None:
    with urllib.request.urlopen(url, timeout=30) as response:
        got = len(response.read())
    if size is not None and got != size:
        raise RuntimeError(f"{url} sent {got} bytes, not {size}")


def check_frame_echo(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"%10d\r\n" % len(BODY) + BODY.encode())
        reader = s.makefile("rb")
        reply = json.loads(reader.read(int(reader.read(12)[:10])))
    if reply != ECHOED:
        raise RuntimeError(f"127.0.0.1:{port} answered {reply!r}, not the echo {ECHOED!r}")


# --- contestants -----------------------------------------------------------------------------------


@dataclass
class Contestant:
    name: str
    front: subprocess.Popen[bytes]  # modproxy, nginx, or the backend itself (row 7)
    others: list[subprocess.Popen[bytes]]  # the rest of the server side
    drive: Callable[[float], dict[str, float]]
    rounds: list[dict[str, float]] = field(default_factory=list)
    peak_front_mb: float = 0.0
    peak_total_mb: float = 0.0
    rss_samples: list[float] = field(default_factory=list)


class Lab:
    """Starts contestants: modproxy and nginx configurations, backends and peers."""

    def __init__(self, work: Path, procs: Processes) -> None:
        self.work, self.procs = work, procs
        self.site = work / "site"
        self.site.mkdir()
        (self.site / "1kb.bin").write_bytes(bytes(range(256)) * 4)
        block = os.urandom(1 << 20)
        for mib in STATIC_SIZES_MIB:
            with open(self.site / f"{mib}mb.bin", "wb") as f:
                for _ in range(mib):
                    f.write(block)
        self.counter = 0

    def _name(self, base: str) -> str:
        self.counter += 1
        return f"{self.counter:02d}-{base}"

    def server(self, base: str, argv: list[str], port: int) -> subprocess.Popen[bytes]:
        name = self._name(base)
        return stack.launch(name, argv, port, self.procs.start, lambda: self.procs.log_tail(name), timeout=30)

    def modproxy(
        self, module_toml: str = "", binary: str = "", log: str = "", more: str = ""
    ) -> tuple[subprocess.Popen[bytes], int]:
        """modproxy (`binary`, or this build's release) with `module_toml`; `log` replaces the `[log]`
        section (default: LOG_LEVEL, the access log kept off below `info`); `more` is appended."""
        port = free_port()
        home = stack.write_home(
            self.work / f"modproxy-{port}",
            port,
            modules=module_toml,
            server=f'root_path = "{self.site}"',
            more=(log or f'[log]\nlevel = "{LOG_LEVEL}"\naccess = "{ACCESS_LOG}"\n') + more,
        )
        name = self._name("modproxy")
        argv = [binary or str(RELEASE / "modproxy"), "--home", str(home)]
        proc = stack.launch(name, argv, port, self.procs.start, lambda: self.procs.log_tail(name), timeout=30)
        return proc, port

    def baseline(
        self,
        row: Row,
        what: str,
        module_toml: str,
        others: list[subprocess.Popen[bytes]],
        drive: Callable[[int], Callable[[float], dict[str, float]]],
    ) -> None:
        """With BENCH_BASELINE: the previous build, configured as the contestant (`what`, with `others` on
        its server side), as a variant of `row`; `drive(port)` drives it."""
        if not BASELINE:
            return
        # Older builds knew `[log] access` only as a switch; at LOG_LEVEL (warn) it writes nothing anyway.
        proc, port = self.modproxy(module_toml, binary=BASELINE, log=f'[log]\nlevel = "{LOG_LEVEL}"\n')
        contestant = Contestant(f"{what}, previous build ({BASELINE_LABEL})", proc, others, drive(port))
        row.variants.append(contestant)
        row.baseline = contestant

    def modproxy_tls(self, module_toml: str = "") -> tuple[subprocess.Popen[bytes], int, tuple[Path, Path]]:
        """modproxy with `module_toml` and an HTTPS listener on a certificate from `modproxy cert local`
        (which also adds the [tls] section); returns the process, the HTTPS port and the certificate and
        key files."""
        port, tls_port = free_port(), free_port()
        home = self.work / f"modproxy-{port}"
        (home / "conf").mkdir(parents=True)
        shutil.copytree(ROOT / "html", home / "html")
        (home / "conf" / "default.toml").write_text(
            textwrap.dedent(f"""\
                [server]
                port = {port}
                listen = "127.0.0.1"
                root_path = "{self.site}"

                [module]
                {module_toml}

                [log]
                level = "{LOG_LEVEL}"
                access = "{ACCESS_LOG}"
                """)
        )
        subprocess.run(
            [
                str(RELEASE / "modproxy"),
                "--home",
                str(home),
                "cert",
                "local",
                "--no-trust",
                "--port",
                str(tls_port),
            ],
            check=True,
            capture_output=True,
        )
        proc = self.server("modproxy", [str(RELEASE / "modproxy"), "--home", str(home)], tls_port)
        return proc, tls_port, (home / "certs" / "localhost.pem", home / "certs" / "localhost.key")

    def nginx(
        self,
        locations: str,
        upstream_port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        access_log: bool = False,
        http2: bool = False,
        keepalive: int = 64,
    ) -> tuple[subprocess.Popen[bytes], int]:
        """nginx with `locations`; `http2`: HTTP/2 on the listener (over TLS by ALPN, else prior-knowledge
        h2c only, so HTTP/1.1 clients cannot use that port). `keepalive_requests` (raised below) also bounds
        HTTP/2 connections since nginx 1.19.7. `keepalive`: idle upstream connections kept per worker; a
        request beyond them opens a connection that is closed after it."""
        port = free_port()
        h2 = " http2" if http2 else ""
        # As modproxy's [tls]: TLS 1.2 and 1.3, a session cache and tickets (wrk speaks HTTP/1.1 only).
        listen = (
            f"listen 127.0.0.1:{port} ssl{h2}; ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}; "
            "ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_tickets on;"
            if tls
            else f"listen 127.0.0.1:{port}{h2};"
        )
        prefix = self.work / f"nginx-{port}"
        prefix.mkdir()
        upstream = (
            f"upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive {keepalive}; keepalive_requests 1000000; }}"
            if upstream_port
            else ""
        )
        temp_paths = " ".join(
            f"{kind}_temp_path {prefix}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (prefix / "nginx.conf").write_text(
            textwrap.dedent(f"""\
                daemon off;
                master_process on;
                worker_processes 1;
                pid {prefix}/nginx.pid;
                error_log {prefix}/error.log warn;
                events {{ worker_connections 16384; }}
                http {{
                    access_log {f"{prefix}/access.log" if access_log else "off"};
                    sendfile on;
                    tcp_nopush on;
                    tcp_nodelay on;
                    keepalive_requests 1000000;
                    default_type application/octet-stream;
                    {temp_paths}
                    {upstream}
                    server {{
                        {listen}
                        root {self.site};
                        {locations}
                    }}
                }}
                """)
        )
        argv = ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
        return self.server("nginx", argv, port), port

    def backend(self, kind: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        addr = f"127.0.0.1:{port}"
        argv = {
            "rust-sdk": [str(RELEASE / "bench-echo-rust"), addr],
            "python-sdk": [str(PYTHON_SDK), str(BENCH / "backends" / "echo.py"), addr],
            "node-sdk": ["node", str(BENCH / "backends" / "echo.js"), addr],
            "hyper": [str(RELEASE / "hyper-echo"), addr],
            "tokio": [str(RELEASE / "tokio-echo"), addr],
            "tokio-dispatch": [str(RELEASE / "tokio-dispatch"), addr],
            "asyncio": [str(PYTHON), str(BENCH / "peers" / "asyncio_echo.py"), addr],
            "asyncio-dispatch": [str(PYTHON), str(BENCH / "peers" / "asyncio_dispatch.py"), addr],
            "node-net": ["node", str(BENCH / "peers" / "net_echo.js"), addr],
            "node-dispatch": ["node", str(BENCH / "peers" / "net_dispatch.js"), addr],
            "node-http": ["node", str(BENCH / "peers" / "http_echo.js"), addr],
            "fastapi": [
                str(PYTHON),
                "-m",
                "uvicorn",
                "--app-dir",
                str(BENCH / "peers"),
                "fastapi_echo:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
        }[kind]
        return self.server(kind, argv, port), port


# As conf/default.toml sets it for the example SDK backends (README: `pipeline`).
PIPELINE = 16


def socket_module(port: int, pipeline: int = 0) -> str:
    extra = f", pipeline = {pipeline}" if pipeline else ""
    return f'module_socket = [ {{ module = "echo", forward_pass = "127.0.0.1:{port}"{extra} }} ]'


NGINX_PROXY = (
    """location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }"""
)


# --- rows ------------------------------------------------------------------------------------------


@dataclass
class Row:
    row: str
    what: str
    unit: str  # "req/s" or "MB/s"
    target: float
    contestant: Contestant | None = None
    peer: Contestant | None = None
    # Other settings of the contestant, measured in the same rounds and shown for comparison only.
    variants: list[Contestant] = field(default_factory=list)
    # The previous build's contestant, when BENCH_BASELINE names one (also among the variants).
    baseline: Contestant | None = None
    # Further peers, each with its own target: contestant ÷ each is a ratio of its own (row 7's second peer).
    more_peers: list[tuple[Contestant, float]] = field(default_factory=list)
    failure: str = ""
    notes: list[str] = field(default_factory=list)


def measure(row: Row) -> None:
    """Warm both up, then interleaved rounds."""
    pair = [c for c in (row.contestant, *row.variants, row.peer, *(p for p, _ in row.more_peers)) if c]
    for c in pair:
        c.drive(WARMUP)
    for _ in range(ROUNDS):
        for c in pair:
            server_side = [c.front.pid, *(p.pid for p in c.others)]
            cpu_before = sum(cpu_seconds(p) for p in server_side)
            with RssSampler(c.front.pid, [p.pid for p in c.others]) as sampler:
                result = c.drive(SECONDS)
            # CPU time the server side spent per request: far less noisy than req/s on a shared machine.
            cpu = sum(cpu_seconds(p) for p in server_side) - cpu_before
            result["cpu_us"] = cpu / max(1.0, result["rps"] * SECONDS) * 1e6
            c.rounds.append(result)
            c.peak_front_mb = max(c.peak_front_mb, *sampler.front_samples)
            c.peak_total_mb = max(c.peak_total_mb, *sampler.total_samples)
            c.rss_samples += sampler.front_samples
    if row.baseline and row.contestant:
        key = "mbps" if row.unit == "MB/s" else "rps"
        new, old = row.contestant, row.baseline
        row.notes.append(
            f"this build ÷ previous build ({BASELINE_LABEL}): **{median(new, key) / median(old, key):.2f}** "
            f"({row.unit}); CPU µs/req {median(new, 'cpu_us'):.1f} vs {median(old, 'cpu_us'):.1f}"
        )


def row_static_small(lab: Lab, row: Row) -> None:
    proxy, pport = lab.modproxy()
    nginx, nport = lab.nginx("location / { }")
    for port in (pport, nport):
        check_http_get(f"http://127.0.0.1:{port}/1kb.bin", 1024)
    row.contestant = Contestant(
        "modproxy static", proxy, [], lambda s: wrk(f"http://127.0.0.1:{pport}/1kb.bin", s)
    )
    row.peer = Contestant("nginx static", nginx, [], lambda s: wrk(f"http://127.0.0.1:{nport}/1kb.bin", s))
    lab.baseline(
        row,
        "modproxy static",
        "",
        [],
        lambda port: lambda s: wrk(f"http://127.0.0.1:{port}/1kb.bin", s),
    )
    measure(row)


def row_static_large(lab: Lab, row: Row, mib: int) -> None:
    """Downloads of the `mib` MiB file on 4 connections: MB/s, and modproxy's RSS staying flat."""
    proxy, pport = lab.modproxy()
    nginx, nport = lab.nginx("location / { }")
    for port in (pport, nport):
        check_http_get(f"http://127.0.0.1:{port}/{mib}mb.bin", mib << 20)
    before = rss_mb(proxy.pid)
    row.contestant = Contestant(
        "modproxy static", proxy, [], lambda s: wrk(f"http://127.0.0.1:{pport}/{mib}mb.bin", s, connections=4)
    )
    row.peer = Contestant(
        "nginx static", nginx, [], lambda s: wrk(f"http://127.0.0.1:{nport}/{mib}mb.bin", s, connections=4)
    )
    lab.baseline(
        row,
        "modproxy static",
        "",
        [],
        lambda port: lambda s: wrk(f"http://127.0.0.1:{port}/{mib}mb.bin", s, connections=4),
    )
    measure(row)
    samples = row.contestant.rss_samples
    row.notes.append(
        f"modproxy RSS during the {mib} MB downloads: {before:.1f} MB before, {min(samples):.1f}–{max(samples):.1f} MB "
        f"while serving ({len(samples)} samples every 100 ms): {'flat' if max(samples) - before < 16 else 'NOT flat'}"
    )
    # A request is a download here: its CPU per MiB served is what compares across file sizes, and the
    # steadiest figure on a shared machine.
    per_mib = ", ".join(
        f"{c.name} {min(r['cpu_us'] for r in c.rounds) / mib:.0f}–{max(r['cpu_us'] for r in c.rounds) / mib:.0f}"
        for c in (row.contestant, *row.variants, row.peer)
    )
    row.notes.append(f"server CPU µs per MiB served (range over rounds): {per_mib}")


def http_module(port: int, pipeline: int = 0) -> str:
    extra = f", pipeline = {pipeline}" if pipeline else ""
    return f'module_http = [ {{ module = "api", proxy_pass = "http://127.0.0.1:{port}"{extra} }} ]'


def row_http_forward(lab: Lab, row: Row) -> None:
    upstream, uport = lab.backend("hyper")
    proxy, pport = lab.modproxy(http_module(uport, PIPELINE))
    one_at_a_time, oport = lab.modproxy(http_module(uport))
    nginx, nport = lab.nginx(NGINX_PROXY, uport)
    for port in (pport, oport, nport):
        check_http_get(f"http://127.0.0.1:{port}/api/item")
    row.contestant = Contestant(
        f"modproxy module_http → hyper, pipeline = {PIPELINE}",
        proxy,
        [upstream],
        lambda s: wrk(f"http://127.0.0.1:{pport}/api/item", s),
    )
    row.variants.append(
        Contestant(
            "modproxy module_http → hyper, one request per connection",
            one_at_a_time,
            [upstream],
            lambda s: wrk(f"http://127.0.0.1:{oport}/api/item", s),
        )
    )
    row.peer = Contestant(
        "nginx proxy_pass → hyper", nginx, [upstream], lambda s: wrk(f"http://127.0.0.1:{nport}/api/item", s)
    )
    lab.baseline(
        row,
        f"modproxy module_http → hyper, pipeline = {PIPELINE}",
        http_module(uport, PIPELINE),
        [upstream],
        lambda port: lambda s: wrk(f"http://127.0.0.1:{port}/api/item", s),
    )
    measure(row)


def row_http_post(lab: Lab, row: Row) -> None:
    """module_http POST of the 101-byte envelope → hyper's JSON echo; both sides as a user configures
    them: modproxy's defaults (one request per upstream connection), nginx with a keep-alive upstream."""
    upstream, uport = lab.backend("hyper")
    proxy, pport = lab.modproxy(http_module(uport))
    nginx, nport = lab.nginx(NGINX_PROXY, uport)
    for port in (pport, nport):
        check_http_echo(f"http://127.0.0.1:{port}/api/echo")

    def post(port: int) -> Callable[[float], dict[str, float]]:
        return lambda s: wrk(f"http://127.0.0.1:{port}/api/echo", s, body=BODY)

    row.contestant = Contestant("modproxy module_http → hyper JSON echo", proxy, [upstream], post(pport))
    row.peer = Contestant("nginx proxy_pass → hyper JSON echo", nginx, [upstream], post(nport))
    measure(row)


def row_socket_plain(lab: Lab, row: Row) -> None:
    """module_socket with its defaults (one request per backend connection) → a frame-protocol echo
    written without the SDK (no `_pipeline` support), against nginx → hyper's JSON echo."""
    backend, bport = lab.backend("tokio")
    proxy, pport = lab.modproxy(socket_module(bport))
    peer, eport = lab.backend("hyper")
    nginx, nport = lab.nginx(NGINX_PROXY, eport)
    for port in (pport, nport):
        check_http_echo(f"http://127.0.0.1:{port}/echo/")
    row.contestant = Contestant(
        "modproxy → hand-written tokio frame echo", proxy, [backend], post_echo(pport)
    )
    row.peer = Contestant("nginx → hyper JSON echo", nginx, [peer], post_echo(nport))
    measure(row)


def post_echo(port: int) -> Callable[[float], dict[str, float]]:
    """wrk POSTing the 101-byte envelope to modproxy's (or nginx's) `/echo/` on `port`."""
    return lambda s: wrk(f"http://127.0.0.1:{port}/echo/", s, body=BODY)


def row_socket(lab: Lab, row: Row, sdk: str, peer_kind: str, sdk_name: str, peer_name: str) -> None:
    backend, bport = lab.backend(sdk)
    proxy, pport = lab.modproxy(socket_module(bport, PIPELINE))
    one_at_a_time, oport = lab.modproxy(socket_module(bport))
    peer, eport = lab.backend(peer_kind)
    nginx, nport = lab.nginx(NGINX_PROXY, eport)
    for port in (pport, oport, nport):
        check_http_echo(f"http://127.0.0.1:{port}/echo/")
    row.contestant = Contestant(
        f"modproxy → {sdk_name}, pipeline = {PIPELINE}",
        proxy,
        [backend],
        post_echo(pport),
    )
    row.variants.append(
        Contestant(
            f"modproxy → {sdk_name}, one request per connection",
            one_at_a_time,
            [backend],
            post_echo(oport),
        )
    )
    row.peer = Contestant(f"nginx → {peer_name}", nginx, [peer], post_echo(nport))
    lab.baseline(
        row,
        f"modproxy → {sdk_name}, pipeline = {PIPELINE}",
        socket_module(bport, PIPELINE),
        [backend],
        post_echo,
    )
    measure(row)


# Row 7's goal against a hand-written server that does the SDK's work (parse, dispatch, serialise).
DISPATCH_TARGET = 1.2


def row_direct(
    lab: Lab,
    row: Row,
    sdk: str,
    sdk_name: str,
    echo: tuple[str, str],
    dispatch: tuple[str, str],
) -> None:
    """The SDK served directly (frameload) against a hand-written `echo` (kind, name): the floor, no
    dispatch; and against a hand-written `dispatch` server: what a user would write instead of the SDK."""
    backend, bport = lab.backend(sdk)
    peer, eport = lab.backend(echo[0])
    dispatcher, dport = lab.backend(dispatch[0])
    for port in (bport, eport, dport):
        check_frame_echo(port)
    row.contestant = Contestant(sdk_name, backend, [], lambda s: frameload(bport, s))
    row.peer = Contestant(echo[1], peer, [], lambda s: frameload(eport, s))
    row.more_peers.append(
        (Contestant(dispatch[1], dispatcher, [], lambda s: frameload(dport, s)), DISPATCH_TARGET)
    )
    measure(row)


def row_idle(lab: Lab, row: Row) -> None:
    """5,000 idle keep-alive clients; RSS; an active client still served; how long they stay open."""
    proxy, port = lab.modproxy()
    time.sleep(1)
    idle_start = rss_mb(proxy.pid)
    check_http_get(f"http://127.0.0.1:{port}/1kb.bin", 1024)
    request = b"GET /1kb.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    held: list[socket.socket] = []
    try:
        opened = time.monotonic()
        for _ in range(IDLE_CONNECTIONS):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.append(conn)
            conn.sendall(request)
            read_response(conn)
        opened = time.monotonic() - opened
        served = time.monotonic()
        time.sleep(1)
        held_rss = rss_mb(proxy.pid)
        open_soon = sum(1 for conn in held if is_open(conn))
        soon = time.monotonic() - served
        active = wrk(f"http://127.0.0.1:{port}/1kb.bin", 2, connections=4)
        time.sleep(max(0.0, 12 - (time.monotonic() - served)))
        open_late = sum(1 for conn in held if is_open(conn))
        rss_after_hold = rss_mb(proxy.pid)
    finally:
        for conn in held:
            conn.close()
    time.sleep(2)
    idle_end = rss_mb(proxy.pid)
    ok = held_rss < 64 and active["errors"] == 0 and active["rps"] > 0
    row.notes += [
        f"modproxy RSS at idle after start: **{idle_start:.1f} MB** (target < 20 MB)",
        f"{len(held)} keep-alive connections opened in {opened:.1f} s, each served one GET; RSS with them open: "
        f"**{held_rss:.1f} MB** (target < 64 MB); {rss_after_hold:.1f} MB 12 s later",
        f"an active client meanwhile (wrk, 4 connections, 2 s): {active['rps']:.0f} req/s, p99 "
        f"{active['p99_ms']:.2f} ms, {active['errors']:.0f} errors",
        f"idle connections still open {soon:.0f} s after the last was served: {open_soon} of {len(held)}; "
        f"12 s after: {open_late}",
        f"modproxy RSS after they closed: {idle_end:.1f} MB",
        f"row 8 {'meets' if ok else 'MISSES'} its target",
    ]


def row_tls_keepalive(lab: Lab, row: Row) -> None:
    """HTTPS GET of the 1 KB file on keep-alive connections: TLS record cost, not handshakes."""
    proxy, pport, cert = lab.modproxy_tls()
    nginx, nport = lab.nginx("location / { }", tls=cert)
    for port in (pport, nport):
        check_https_get(port)
    row.contestant = Contestant(
        "modproxy HTTPS", proxy, [], lambda s: wrk(f"https://127.0.0.1:{pport}/1kb.bin", s)
    )
    row.peer = Contestant("nginx HTTPS", nginx, [], lambda s: wrk(f"https://127.0.0.1:{nport}/1kb.bin", s))
    measure(row)


def row_tls_handshakes(lab: Lab, row: Row) -> None:
    """A new TLS connection per request, each resumed from an earlier connection's ticket, driven by
    tlsload: wrk (OpenSSL) spent more CPU per connection than either server, so it measured itself."""
    proxy, pport, cert = lab.modproxy_tls()
    nginx, nport = lab.nginx("location / { }", tls=cert)
    for port in (pport, nport):
        check_https_get(port)
    # `modproxy cert local` made the certificate both servers present, and its authority beside it.
    ca = cert[0].parent / "local-ca.pem"
    row.contestant = Contestant("modproxy TLS handshakes", proxy, [], lambda s: tlsload(pport, s, ca))
    row.peer = Contestant("nginx TLS handshakes", nginx, [], lambda s: tlsload(nport, s, ca))
    measure(row)


def check_https_get(port: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/1kb.bin", timeout=10, context=context) as response:
        if len(response.read()) != 1024:
            raise RuntimeError(f"https://127.0.0.1:{port}/1kb.bin: not the 1 KB file")


def row_tls_idle(lab: Lab, row: Row) -> None:
    """5,000 idle keep-alive TLS clients, each served one GET: RSS of modproxy and of nginx."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    request = b"GET /1kb.bin HTTP/1.1\r\nHost: localhost\r\n\r\n"
    proxy, pport, cert = lab.modproxy_tls()
    nginx, nport = lab.nginx("location / { }", tls=cert)
    for name, proc, port in (("modproxy", proxy, pport), ("nginx", nginx, nport)):
        time.sleep(1)
        before = tree_rss_mb(proc.pid)
        held: list[ssl.SSLSocket] = []
        try:
            opened = time.monotonic()
            for _ in range(IDLE_CONNECTIONS):
                conn = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
                held.append(conn)
                conn.sendall(request)
                read_response(conn)
            opened = time.monotonic() - opened
            time.sleep(1)
            with_them = tree_rss_mb(proc.pid)
        finally:
            for conn in held:
                conn.close()
        row.notes.append(
            f"{name}: {len(held)} idle TLS keep-alive connections opened in {opened:.1f} s; RSS (with workers) "
            f"{before:.1f} MB before, **{with_them:.1f} MB** with them open"
        )


# The log settings modproxy ships (conf/default.toml): access lines on, in their own file.
SHIPPED_LOG = '[log]\nlevel = "info"\naccess = "logs/access.log"\n'


def row_access_log(lab: Lab, row: Row) -> None:
    """Defaults against defaults: both servers writing their access log to a file, and the cost of it."""
    on, on_port = lab.modproxy(log=SHIPPED_LOG)
    off, off_port = lab.modproxy(log='[log]\nlevel = "info"\naccess = "off"\n')
    nginx_on, non_port = lab.nginx("location / { }", access_log=True)
    nginx_off, noff_port = lab.nginx("location / { }")
    for port in (on_port, off_port, non_port, noff_port):
        check_http_get(f"http://127.0.0.1:{port}/1kb.bin", 1024)

    def get(port: int) -> Callable[[float], dict[str, float]]:
        return lambda s: wrk(f"http://127.0.0.1:{port}/1kb.bin", s)

    row.contestant = Contestant(
        "modproxy static, shipped log settings (access log to a file)", on, [], get(on_port)
    )
    modproxy_off = Contestant("modproxy static, access log off", off, [], get(off_port))
    nginx_quiet = Contestant("nginx static, access_log off", nginx_off, [], get(noff_port))
    row.variants += [modproxy_off, nginx_quiet]
    row.peer = Contestant("nginx static, access_log to a file (its default)", nginx_on, [], get(non_port))
    measure(row)
    ours = median(row.contestant, "cpu_us") - median(modproxy_off, "cpu_us")
    theirs = median(row.peer, "cpu_us") - median(nginx_quiet, "cpu_us")
    row.notes.append(
        f"the access log's cost, CPU µs/req on − off: modproxy {ours:+.2f}, nginx {theirs:+.2f}; req/s on ÷ off: "
        f"modproxy {median(row.contestant, 'rps') / median(modproxy_off, 'rps'):.2f}, "
        f"nginx {median(row.peer, 'rps') / median(nginx_quiet, 'rps'):.2f}"
    )


def row_under_attack(lab: Lab, row: Row) -> None:
    """Row 4's load while a hostile client holds slow uploads, idle connections and oversized bodies."""
    backend, bport = lab.backend("rust-sdk")
    proxy, pport = lab.modproxy(socket_module(bport, PIPELINE))
    check_http_echo(f"http://127.0.0.1:{pport}/echo/")
    before = rss_mb(proxy.pid)

    def attacked(seconds: float) -> dict[str, float]:
        attacker = subprocess.Popen(
            ["taskset", "-c", LOAD_CPU, sys.executable, str(BENCH / "attack.py"), str(pport)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(2)  # its connections are open and its uploads started
            return post_echo(pport)(seconds)
        finally:
            attacker.kill()
            attacker.wait()

    row.contestant = Contestant(
        f"modproxy → Rust SDK echo, pipeline = {PIPELINE}, under attack", proxy, [backend], attacked
    )
    row.peer = Contestant(
        "the same, no attack",
        proxy,
        [backend],
        post_echo(pport),
    )
    measure(row)
    row.notes.append(
        f"the attack: {1000} idle connections, 200 uploads announcing 100 kB at a byte a second, 20 bodies of "
        f"100 MB a second (413 at max_body); modproxy RSS {before:.1f} MB before, peak {row.contestant.peak_front_mb:.1f} MB"
    )


CHECKED_BODY = BODY.replace('"method":"echo"', '"method":"check"')


def row_validate(lab: Lab, row: Row) -> None:
    """Row 4's load with `validate = true`: the cost of checking each `data` against the method's schema."""
    backend, bport = lab.backend("rust-sdk")
    checked, cport = lab.modproxy(socket_module(bport, PIPELINE).replace(" }", ", validate = true }"))
    unchecked, uport = lab.modproxy(socket_module(bport, PIPELINE))
    for port in (cport, uport):
        check_http_echo(f"http://127.0.0.1:{port}/echo/", CHECKED_BODY)
    invalid = CHECKED_BODY.replace('"id":12345', '"id":"12345"').encode()
    try:
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{cport}/echo/", data=invalid), timeout=10
        )
        raise RuntimeError(f"row {row.row}: validate = true let a string id through")
    except urllib.error.HTTPError as refused:
        if refused.code != 400:
            raise RuntimeError(f"row {row.row}: a string id got {refused.code}, not 400") from refused

    def post(port: int) -> Callable[[float], dict[str, float]]:
        return lambda s: wrk(f"http://127.0.0.1:{port}/echo/", s, body=CHECKED_BODY)

    row.contestant = Contestant(
        f"modproxy → Rust SDK typed echo, pipeline = {PIPELINE}, validate = true",
        checked,
        [backend],
        post(cport),
    )
    row.peer = Contestant("the same, validate off (the default)", unchecked, [backend], post(uport))
    measure(row)
    cost = median(row.contestant, "cpu_us") - median(row.peer, "cpu_us")
    row.notes.append(f"validation's cost: {cost:+.2f} CPU µs per request (proxy and backend together)")


def etcd_put(url: str, key: str, value: str) -> None:
    """Writes `key` = `value` through etcd's JSON gateway."""
    body = json.dumps(
        {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value.encode()).decode()}
    ).encode()
    urllib.request.urlopen(
        urllib.request.Request(f"{url}/v3/kv/put", data=body, method="POST"), timeout=5
    ).read()


def row_etcd(lab: Lab, row: Row) -> None:
    """Row 4's load with the node taken from etcd against the same node written in the config."""
    if not Path("/usr/bin/etcd").exists():
        raise RuntimeError("/usr/bin/etcd is missing (Debian's etcd-server)")
    client, peer_port = free_port(), free_port()
    url, peer = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer_port}"
    lab.server(
        "etcd",
        [
            "/usr/bin/etcd",
            "--name",
            "bench",
            "--data-dir",
            str(lab.work / "etcd"),
            "--listen-client-urls",
            url,
            "--advertise-client-urls",
            url,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"bench={peer}",
        ],
        client,
    )
    backend, bport = lab.backend("rust-sdk")
    etcd_put(url, f"/modproxy/modules/echo/127.0.0.1:{bport}", f"127.0.0.1:{bport}")
    discovered, dport = lab.modproxy(
        f'module_socket = [ {{ module = "echo", discover = "etcd", pipeline = {PIPELINE} }} ]',
        more=f'\n[discovery]\netcd = ["{url}"]\n',
    )
    static, sport = lab.modproxy(socket_module(bport, PIPELINE))
    deadline = time.monotonic() + 10
    while True:
        try:
            check_http_echo(f"http://127.0.0.1:{dport}/echo/")
            break
        except (OSError, ValueError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    check_http_echo(f"http://127.0.0.1:{sport}/echo/")
    row.contestant = Contestant(
        f"modproxy → Rust SDK echo from etcd, pipeline = {PIPELINE}",
        discovered,
        [backend],
        post_echo(dport),
    )
    row.peer = Contestant(
        f"modproxy → Rust SDK echo at a configured address, pipeline = {PIPELINE}",
        static,
        [backend],
        post_echo(sport),
    )
    measure(row)


@dataclass
class ProxiedPath:
    """What an HTTP/2 or latency row sends where: a modproxy module and the nginx location that does the
    same, the backend behind each, the URL path and the POST body (None: GET)."""

    module_toml: str
    modproxy_backends: list[subprocess.Popen[bytes]]
    nginx_locations: str
    nginx_upstream: int | None
    nginx_backends: list[subprocess.Popen[bytes]]
    path: str
    body: str | None
    what: str  # "static 1 KB", "module_http → hyper", …
    peer_what: str


def proxied_path(lab: Lab, kind: str) -> ProxiedPath:
    """`static` (the 1 KB file), `http` (row 3's GET through module_http, modproxy's defaults) or `socket`
    (row 4's POST to the Rust SDK echo, pipeline = 16 as shipped for SDK backends, nginx → hyper)."""
    if kind == "static":
        return ProxiedPath("", [], "location / { }", None, [], "/1kb.bin", None, "static", "static")
    if kind == "http":
        upstream, uport = lab.backend("hyper")
        return ProxiedPath(
            http_module(uport),
            [upstream],
            NGINX_PROXY,
            uport,
            [upstream],
            "/api/item",
            None,
            "module_http → hyper",
            "proxy_pass → hyper",
        )
    backend, bport = lab.backend("rust-sdk")
    peer, eport = lab.backend("hyper")
    return ProxiedPath(
        socket_module(bport, PIPELINE),
        [backend],
        NGINX_PROXY,
        eport,
        [peer],
        "/echo/",
        BODY,
        f"→ Rust SDK echo, pipeline = {PIPELINE}",
        "→ hyper JSON echo",
    )


def row_h2(lab: Lab, row: Row, kind: str, tls: bool) -> None:
    """HTTP/2 (h2load, CONNECTIONS clients, H2_STREAMS streams each; prior-knowledge h2c, or h2 by ALPN over
    TLS) against nginx with `http2` on its listener and `keepalive_requests` raised."""
    need_h2load()
    route = proxied_path(lab, kind)
    if tls:
        proxy, pport, cert = lab.modproxy_tls(route.module_toml)
    else:
        (proxy, pport), cert = lab.modproxy(route.module_toml), None
    nginx, nport = lab.nginx(route.nginx_locations, route.nginx_upstream, tls=cert, http2=True)
    scheme, over = ("https", "h2") if tls else ("http", "h2c")

    def load(port: int) -> Callable[[float], dict[str, float]]:
        return lambda s: h2load(f"{scheme}://127.0.0.1:{port}{route.path}", s, body=route.body)

    for port in (pport, nport):
        check_h2(f"{scheme}://127.0.0.1:{port}{route.path}", route.body)
    row.contestant = Contestant(f"modproxy {route.what}, {over}", proxy, route.modproxy_backends, load(pport))
    row.peer = Contestant(f"nginx {route.peer_what}, {over}", nginx, route.nginx_backends, load(nport))
    if route.nginx_upstream:
        # 640 requests in flight outrun `keepalive 64`: nginx then opens and closes an upstream connection
        # per request beyond its pool. A second peer keeps one idle connection per stream.
        streams = CONNECTIONS * H2_STREAMS
        pooled, kport = lab.nginx(
            route.nginx_locations, route.nginx_upstream, tls=cert, http2=True, keepalive=streams
        )
        check_h2(f"{scheme}://127.0.0.1:{kport}{route.path}", route.body)
        name = f"nginx {route.peer_what}, {over}, keepalive {streams}"
        row.more_peers.append((Contestant(name, pooled, route.nginx_backends, load(kport)), row.target))
    measure(row)


def row_latency(lab: Lab, row: Row, kind: str) -> None:
    """p99 at half of nginx's saturation rate: nginx's closed-loop req/s (wrk) sets the rate; then h2load
    over HTTP/1.1 keep-alive (`--rps`) sends each connection's requests on a fixed schedule, on modproxy
    and on nginx in turn. One request is in flight per connection, so a late reply delays that
    connection's next one, and h2load times a request from its send, not from its slot: at half load this
    is rare, but it is not wrk2's correction for coordinated omission."""
    need_h2load()
    route = proxied_path(lab, kind)
    proxy, pport = lab.modproxy(route.module_toml)
    nginx, nport = lab.nginx(route.nginx_locations, route.nginx_upstream)
    for port in (pport, nport):
        check_http_get(f"http://127.0.0.1:{port}{route.path}")
    wrk(f"http://127.0.0.1:{nport}{route.path}", WARMUP)
    saturation = wrk(f"http://127.0.0.1:{nport}{route.path}", SECONDS)["rps"]
    per_connection = max(1, round(saturation / 2 / CONNECTIONS))

    def load(port: int) -> Callable[[float], dict[str, float]]:
        return lambda s: h2load(
            f"http://127.0.0.1:{port}{route.path}", s, streams=1, h1=True, rps_per_client=per_connection
        )

    row.contestant = Contestant(
        f"modproxy {route.what}, open loop", proxy, route.modproxy_backends, load(pport)
    )
    row.peer = Contestant(f"nginx {route.peer_what}, open loop", nginx, route.nginx_backends, load(nport))
    measure(row)
    row.notes.append(
        f"nginx's saturation (wrk, {CONNECTIONS} connections, closed loop): {saturation:,.0f} req/s; offered "
        f"{per_connection * CONNECTIONS:,} req/s ({per_connection} a second on each of {CONNECTIONS} "
        f"connections); served: modproxy {median(row.contestant, 'rps'):,.0f}, nginx {median(row.peer, 'rps'):,.0f} "
        "req/s; ratio = nginx's p99 ÷ modproxy's"
    )


def read_response(conn: socket.socket) -> None:
    """Reads one response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)


def is_open(conn: socket.socket) -> bool:
    # Non-blocking: a socket with a timeout would first wait for readability, i.e. for the close.
    conn.setblocking(False)
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


ROW_PLAN: list[tuple[Row, Callable[[Lab, Row], None]]] = [
    (Row("1", "static 1 KB file", "req/s", 1.0), row_static_small),
    (
        Row("2", "static 100 MB file, 4 connections", "MB/s", 0.8),
        lambda lab, row: row_static_large(lab, row, 100),
    ),
    (
        Row("2b", "static 1 MiB file, 4 connections", "MB/s", 0.9),
        lambda lab, row: row_static_large(lab, row, 1),
    ),
    (
        Row("2c", "static 10 MiB file, 4 connections", "MB/s", 0.9),
        lambda lab, row: row_static_large(lab, row, 10),
    ),
    (
        Row("2d", "static 100 MiB file, 4 connections", "MB/s", 0.9),
        lambda lab, row: row_static_large(lab, row, 100),
    ),
    (Row("3", "module_http GET → hyper upstream", "req/s", 1.2), row_http_forward),
    (Row("3b", "module_http POST 101 B JSON → hyper JSON echo, defaults", "req/s", 1.2), row_http_post),
    (
        Row("4", "module_socket → Rust SDK echo", "req/s", 1.5),
        lambda lab, row: row_socket(lab, row, "rust-sdk", "hyper", "Rust SDK echo", "hyper JSON echo"),
    ),
    (
        Row("4b", "module_socket → hand-written tokio frame echo, defaults", "req/s", 1.2),
        row_socket_plain,
    ),
    (
        Row("5", "module_socket → Python SDK echo", "req/s", 5.0),
        lambda lab, row: row_socket(
            lab, row, "python-sdk", "fastapi", "Python SDK echo", "uvicorn + FastAPI echo"
        ),
    ),
    (
        Row("6", "module_socket → Node SDK echo", "req/s", 1.5),
        lambda lab, row: row_socket(lab, row, "node-sdk", "node-http", "Node SDK echo", "Node http echo"),
    ),
    (
        Row("7a", "socket protocol direct: Rust SDK", "req/s", 0.8),
        lambda lab, row: row_direct(
            lab,
            row,
            "rust-sdk",
            "Rust SDK echo",
            ("tokio", "hand-written tokio echo"),
            ("tokio-dispatch", "hand-written tokio + serde JSON dispatch"),
        ),
    ),
    (
        Row("7b", "socket protocol direct: Python SDK", "req/s", 0.8),
        lambda lab, row: row_direct(
            lab,
            row,
            "python-sdk",
            "Python SDK echo",
            ("asyncio", "hand-written asyncio echo"),
            ("asyncio-dispatch", "hand-written asyncio + json.loads dispatch"),
        ),
    ),
    (
        Row("7c", "socket protocol direct: Node SDK", "req/s", 0.8),
        lambda lab, row: row_direct(
            lab,
            row,
            "node-sdk",
            "Node SDK echo",
            ("node-net", "hand-written Node net echo"),
            ("node-dispatch", "hand-written Node net + JSON.parse dispatch"),
        ),
    ),
    (Row("8", "5,000 idle keep-alive connections", "", 0.0), row_idle),
    (Row("9", "HTTPS static 1 KB file, keep-alive", "req/s", 1.0), row_tls_keepalive),
    (Row("10", "new TLS connections (one GET each)", "req/s", 1.0), row_tls_handshakes),
    (Row("11", "5,000 idle TLS keep-alive connections", "", 0.0), row_tls_idle),
    (Row("12", "static 1 KB file, access log on as shipped", "req/s", 1.0), row_access_log),
    (Row("13", "row 4 under attack (legitimate client's share)", "req/s", 0.8), row_under_attack),
    (Row("14", "row 4 with the node from etcd", "req/s", 0.95), row_etcd),
    (Row("15", "row 4 with validate = true", "req/s", 0.9), row_validate),
    (
        Row("16a", "HTTP/2 h2c static 1 KB file", "req/s", 1.0),
        lambda lab, row: row_h2(lab, row, "static", tls=False),
    ),
    (
        Row("16b", "HTTP/2 h2c module_http GET → hyper upstream", "req/s", 1.2),
        lambda lab, row: row_h2(lab, row, "http", tls=False),
    ),
    (
        Row("16c", "HTTP/2 h2c module_socket → Rust SDK echo", "req/s", 1.5),
        lambda lab, row: row_h2(lab, row, "socket", tls=False),
    ),
    (
        Row("17a", "HTTP/2 over TLS static 1 KB file", "req/s", 1.0),
        lambda lab, row: row_h2(lab, row, "static", tls=True),
    ),
    (
        Row("17b", "HTTP/2 over TLS module_http GET → hyper upstream", "req/s", 1.2),
        lambda lab, row: row_h2(lab, row, "http", tls=True),
    ),
    (
        Row("17c", "HTTP/2 over TLS module_socket → Rust SDK echo", "req/s", 1.5),
        lambda lab, row: row_h2(lab, row, "socket", tls=True),
    ),
    (
        Row("18a", "p99 at 50 % of nginx's saturation, static 1 KB file", P99, 1.0),
        lambda lab, row: row_latency(lab, row, "static"),
    ),
    (
        Row("18b", "p99 at 50 % of nginx's saturation, module_http GET", P99, 1.0),
        lambda lab, row: row_latency(lab, row, "http"),
    ),
]


# --- report ----------------------------------------------------------------------------------------


def median(c: Contestant, key: str) -> float:
    return statistics.median(r[key] for r in c.rounds)


def result_key(row: Row) -> str:
    return {"MB/s": "mbps", P99: "p99_ms"}.get(row.unit, "rps")


def ratio(row: Row, c: Contestant, peer: Contestant) -> float:
    """`c` ÷ `peer` on the row's result; for a latency, `peer` ÷ `c`, so that ≥ 1 still means ahead."""
    key = result_key(row)
    return median(peer, key) / median(c, key) if row.unit == P99 else median(c, key) / median(peer, key)


def spread(c: Contestant, key: str) -> float:
    values = [r[key] for r in c.rounds]
    return (
        (max(values) - min(values)) / statistics.median(values) * 100
        if values and statistics.median(values)
        else 0
    )


def table(rows: list[Row]) -> str:
    lines = [
        "| row | contestant | result | spread | p50 ms | p99 ms | CPU µs/req | peak RSS MB front / total | errors | ratio | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.failure:
            lines.append(f"| {row.row} | {row.what} | FAILED: {row.failure} | | | | | | | | |")
            continue
        if row.contestant is None or row.peer is None:
            continue
        key = result_key(row)
        entries = [
            (row.contestant, "contestant", row.target),
            *((v, "variant", 0.0) for v in row.variants),
            (row.peer, "peer", 0.0),
            *((p, "more", target) for p, target in row.more_peers),
        ]
        for c, role, target in entries:
            is_contestant = role == "contestant"
            p99_note = ""
            if is_contestant and row.row in {"3", "4", "5", "6"}:
                p99_note = (
                    " ✓" if median(c, "p99_ms") <= median(row.peer, "p99_ms") else " ✗ (peer's is lower)"
                )
            against = {"contestant": row.peer, "more": c}.get(role)
            mark = ratio(row, row.contestant, against) if against else 0.0
            verdict = {
                "contestant": f"{mark:.2f} {'✓' if mark >= target else '✗'}",
                "variant": f"({ratio(row, c, row.peer):.2f})",
                "peer": "",
                "more": f"contestant ÷ this: {mark:.2f} {'✓' if mark >= target else '✗'}",
            }[role]
            result = f"{median(c, key):.2f}" if row.unit == P99 else f"{median(c, key):,.0f}"
            lines.append(
                f"| {row.row if is_contestant else ''} | {c.name} | {result} {row.unit} | "
                f"±{spread(c, key):.0f}% | {median(c, 'p50_ms'):.2f} | {median(c, 'p99_ms'):.2f}{p99_note} | "
                f"{median(c, 'cpu_us'):.0f} | "
                f"{c.peak_front_mb:.1f} / {c.peak_total_mb:.1f} | {sum(r['errors'] for r in c.rounds):.0f} | "
                f"{verdict} | {'≥ ' + format(target, 'g') if target else ''} |"
            )
    return "\n".join(lines)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs (nproc), {cpu}, Linux {platform.release()}"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(rows: list[Row], started: datetime, load_before: str, load_after: str, elapsed: float) -> str:
    notes = [f"- row {row.row}: {note}" for row in rows for note in row.notes]
    heading = f"## Run of {started:%Y-%m-%d %H:%M} UTC" + (f" — {LABEL}" if LABEL else "")
    return "\n".join(
        [
            heading,
            "",
            f"- machine: {machine()}",
            f"- load average (1, 5, 15 min) before: {load_before}; after: {load_after} — other engineers' builds "
            "share this machine, so compare ratios (same run, interleaved) rather than absolute numbers",
            f"- {ROUNDS} interleaved rounds of {SECONDS:g} s after a {WARMUP:g} s warm-up each; medians shown; "
            f"'spread' is (max − min) ÷ median over the rounds; the run took {elapsed / 60:.1f} min",
            f"- load generator (wrk -t1 over HTTP, frameload over the socket protocol; one thread each, {CONNECTIONS} "
            "keep-alive connections unless the row says otherwise, 101-byte JSON POST bodies) **pinned to CPU 0**; "
            "the server side (modproxy + backend, or nginx + backend) **pinned to CPU 1**, one worker each "
            "(TOKIO_WORKER_THREADS=1, nginx worker_processes 1, uvicorn --workers 1, Node's one JS thread)",
            f'- modproxy\'s [log] level = "{LOG_LEVEL}" (nginx: access_log off)',
            "- CPU µs/req: user + system CPU time of the whole server side per request (from /proc; robust to "
            "the machine's noise, unlike req/s); for rows 2, 2b and 2c it is per download of the file",
            "- rows 16 and 17: h2load -t1 over HTTP/2 (h2c with prior knowledge, or h2 by ALPN over TLS), "
            f"{CONNECTIONS} connections × {H2_STREAMS} streams; nginx with `http2` and keepalive_requests 1000000; "
            "rows 18: open loop (h2load --rps over HTTP/1.1 keep-alive) at half of nginx's closed-loop req/s, "
            "ratio = nginx's p99 ÷ modproxy's",
            "- ratio = contestant ÷ peer (req/s or MB/s); RSS: 'front' is modproxy or nginx (or the backend in row 7), "
            "'total' adds its backend",
            f"- rows 3–6: modproxy runs with `pipeline = {PIPELINE}` (README: `pipeline`; conf/default.toml sets it "
            "for the example SDK backends); the same build with one request per backend connection (the default "
            "for other backends) is measured in the same rounds, its ratio in parentheses, for comparison only",
            "",
            table(rows),
            "",
            *notes,
        ]
    )


def write_results(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else f"# Benchmark results\n\n{START}\n{END}\n"
    if START not in old or END not in old:
        old = old.rstrip() + f"\n\n{START}\n{END}\n"
    head, rest = old.split(START, 1)
    tail = rest.split(END, 1)[1]
    RESULTS.write_text(f"{head}{START}\n\n{text}\n\n{END}{tail}")
    history = ROOT / "target" / "bench"
    history.mkdir(parents=True, exist_ok=True)
    with open(history / "history.md", "a") as f:
        f.write(text + "\n\n")


# --- main ------------------------------------------------------------------------------------------


def selected(row_id: str) -> bool:
    """Whether BENCH_ROWS picks the row `row_id` (see ROWS)."""
    if not ROWS or row_id in ROWS:
        return True
    group = row_id.rstrip("abcdefgh")
    return group in ROWS and all(r.row != group for r, _ in ROW_PLAN)


def budget_seconds() -> float:
    rows = len([r for r, _ in ROW_PLAN if selected(r.row)])
    return 600 + rows * 2 * (WARMUP + ROUNDS * SECONDS + 20)


@contextmanager
def bounded_run(procs: Processes) -> Iterator[None]:
    """Kills everything started on any exit: success, error, Ctrl-C, SIGTERM or the time budget."""

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def overrun(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"the benchmark ran past its budget of {budget_seconds():.0f} s")

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, interrupt)
    signal.signal(signal.SIGALRM, overrun)
    signal.alarm(int(budget_seconds()))
    try:
        yield
    finally:
        signal.alarm(0)
        procs.stop_all()


def main() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # the harness itself stays off the server's core
    started = datetime.now(UTC)
    load_before = loadavg()
    t0 = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="modproxy-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's worker runs as an unprivileged user
        (work / "logs").mkdir()
        procs = Processes(work / "logs")
        with bounded_run(procs):
            lab = Lab(work, procs)
            for row, run in ROW_PLAN:
                if not selected(row.row):
                    continue
                print(f"row {row.row}: {row.what} ...", flush=True)
                try:
                    run(lab, row)
                except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as error:
                    row.failure = str(error).splitlines()[0][:200]
                    print(f"row {row.row} failed: {error}", file=sys.stderr, flush=True)
                finally:
                    procs.stop_all()
                rows.append(row)
                if row.contestant and row.peer and not row.failure:
                    print("\n".join(table([row]).splitlines()[2:]), flush=True)
                for note in row.notes:
                    print(f"  {note}", flush=True)
    text = report(rows, started, load_before, loadavg(), time.monotonic() - t0)
    write_results(text)
    print()
    print(text)
    print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
