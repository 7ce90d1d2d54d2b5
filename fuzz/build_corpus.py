#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target into fuzz/corpus/<target>/ (`make fuzz` calls this).

frame_decoder: every shared length-line vector (sdk-rust/tests/vectors), whole and in chunks of 1 and 5
bytes, behind the target's 5-byte header (max_frame as a little-endian u32, then the chunk size).
Every target: the hand-written inputs in fuzz/seeds/<target>/; config_parse also conf/default.toml.
The normal test suite replays the same inputs (sdk-rust/tests/fuzz_replay.rs, proxy/tests/fuzz_replay.rs).
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FUZZ = REPO / "fuzz"
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
TARGETS = ("frame_decoder", "request_path", "config_parse")


def write(target: str, data: bytes) -> None:
    directory = FUZZ / "corpus" / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main() -> int:
    vectors = sorted((REPO / "sdk-rust" / "tests" / "vectors").glob("*.json"))
    for path in vectors:
        vector = json.loads(path.read_text())
        max_frame = vector.get("max_frame", DEFAULT_MAX_FRAME)
        for chunk in (0, 1, 5):
            write("frame_decoder", struct.pack("<IB", max_frame, chunk) + vector["input"].encode())
    write("config_parse", (REPO / "conf" / "default.toml").read_bytes())
    seeds = 0
    for target in TARGETS:
        for seed in sorted((FUZZ / "seeds" / target).glob("*")):
            write(target, seed.read_bytes())
            seeds += 1
    print(f"fuzz/corpus: seeds from {len(vectors)} vectors and {seeds} hand-written inputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
