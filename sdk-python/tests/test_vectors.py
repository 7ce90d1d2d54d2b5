"""The shared length-line vectors (sdk-rust/tests/vectors), through the binding and over TCP.

The binding's ``decode_frames`` is the core's own decoder; the TCP half sends each vector's bytes
to a served backend and checks that it answers every good frame and refuses the bad one.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from conftest import REPO
from modproxy_sdk import DEFAULT_MAX_FRAME, Backend, _native
from wire import Connection

VECTORS_DIR = REPO / "sdk-rust" / "tests" / "vectors"
VECTORS = sorted(VECTORS_DIR.glob("*.json"))


def load(path: Path) -> tuple[bytes, int, list[bytes], str | None]:
    vector = json.loads(path.read_text(encoding="utf-8"))
    frames = [frame.encode() for frame in vector["frames"]]
    return (
        vector["input"].encode(),
        vector.get("max_frame", DEFAULT_MAX_FRAME),
        frames,
        vector["error"],
    )


def test_the_vectors_are_there():
    assert len(VECTORS) >= 20, f"expected the shared vectors in {VECTORS_DIR}"


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_decoder_gives_the_vectors_outcome_however_the_input_is_split(path):
    data, max_frame, frames, error = load(path)
    assert _native.decode_frames(data, max_frame) == (frames, error), "in one read"
    assert _native.decode_frames(data, max_frame, 1) == (frames, error), "one byte at a time"
    for chunk_size in range(2, min(len(data), 40)):
        assert _native.decode_frames(data, max_frame, chunk_size) == (frames, error), chunk_size


@pytest.fixture(scope="module")
def backends():
    """One served backend per max_frame in the vectors, answering ``echo``."""
    from conftest import ServedBackend

    app = Backend()
    app.method(lambda data: data, name="echo")
    served: dict[int, ServedBackend] = {}
    yield lambda max_frame: served.setdefault(max_frame, ServedBackend(app, max_frame)).addr
    for backend in served.values():
        backend.stop()


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_served_backend_answers_each_good_frame_and_refuses_the_bad_one(path, backends):
    data, max_frame, frames, error = load(path)
    with Connection(backends(max_frame)) as conn:
        conn.send_raw(data)
        conn.sock.shutdown(socket.SHUT_WR)
        replies = [json.loads(reply) for reply in conn.read_all()]
    # The vectors' payloads are JSON but not envelopes: each one gets its own bad_request reply.
    assert len(replies) == len(frames) + (error is not None), replies
    for reply in replies:
        assert reply["error"]["code"] == "bad_request", reply
    if error is not None:
        assert replies[-1]["error"]["message"].startswith("bad frame"), replies[-1]


@pytest.mark.parametrize(
    "path", [p for p in VECTORS if load(p)[3] is None and load(p)[2]], ids=lambda p: p.stem
)
def test_served_backend_reads_good_vectors_sent_one_byte_at_a_time(path, backends):
    data, max_frame, frames, _ = load(path)
    with Connection(backends(max_frame)) as conn:
        for i in range(len(data)):
            conn.send_raw(data[i : i + 1])
        conn.sock.shutdown(socket.SHUT_WR)
        assert len(conn.read_all()) == len(frames)
