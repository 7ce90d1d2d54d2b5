"""A hostile client for bench row 13: slow uploads, oversized bodies and idle connections against one
modproxy port, for as long as it runs (the harness kills it).

Usage: attack.py PORT
"""

import contextlib
import socket
import sys
import time

SLOW_UPLOADS = 200
IDLE = 1000
OVERSIZED_PER_SECOND = 20


def connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return None


def main() -> None:
    port = int(sys.argv[1])
    # Idle connections that never send a byte, and uploads that announce 100 kB and send a byte a second.
    idle = [c for c in (connect(port) for _ in range(IDLE)) if c]
    slow = []
    for _ in range(SLOW_UPLOADS):
        conn = connect(port)
        if conn:
            conn.sendall(
                b"POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n{"
            )
            slow.append(conn)
    big = b"POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n" + b"x" * (1 << 20)
    while True:
        started = time.monotonic()
        for _ in range(OVERSIZED_PER_SECOND):
            conn = connect(port)
            if conn:
                with contextlib.suppress(OSError):
                    conn.sendall(big)
                conn.close()
        for conn in list(slow):
            try:
                conn.sendall(b" ")
            except OSError:
                slow.remove(conn)
                replacement = connect(port)
                if replacement:
                    slow.append(replacement)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        del idle[:0]  # held open until killed


if __name__ == "__main__":
    main()
