"""Compression ratio and CPU of permessage-deflate settings on JSON-like messages.

Run:  python bench/deflate_ratio.py [--messages N]

What a server sends on one connection after accepting a browser's offer
(``permessage-deflate; client_max_window_bits``): syncws with its defaults and
with other settings, next to websockets' default server settings (needs the
bench extra). Three corpora of JSON messages, generated from a fixed seed:
small chat-like messages (80-300 bytes), state updates (1-4 KiB) and a few
large documents (16 KiB). Each figure is compressed bytes / original bytes
(lower is better) and microseconds of compression per message, for the
protocol core alone (no sockets). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncws.protocol.deflate import ServerPerMessageDeflateFactory
from syncws.protocol.frames import Frame, Opcode

BROWSER_OFFER = [("client_max_window_bits", None)]
WORDS = [
    "hello",
    "there",
    "anyone",
    "online",
    "today",
    "the",
    "meeting",
    "moved",
    "to",
    "three",
    "please",
    "review",
    "the",
    "document",
    "before",
    "lunch",
    "thanks",
    "great",
    "idea",
    "shipping",
    "the",
    "release",
    "tonight",
]


def chat(rng: random.Random, index: int) -> bytes:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30)))
    message = {
        "type": "message",
        "id": 100_000 + index,
        "room": rng.choice(["lobby", "dev", "random", "support"]),
        "user": {"id": rng.randint(1, 500), "name": f"user{rng.randint(1, 500)}"},
        "text": text,
        "ts": 1_764_600_000 + index * 7,
    }
    return json.dumps(message).encode()


def update(rng: random.Random, index: int) -> bytes:
    rows = [
        {
            "symbol": rng.choice(["ACME", "INIT", "GLOBX", "UMBR", "WAYN"]),
            "price": round(rng.uniform(10, 500), 2),
            "volume": rng.randint(1, 10_000),
            "open": rng.random() > 0.5,
        }
        for _ in range(rng.randint(10, 45))
    ]
    return json.dumps({"type": "update", "seq": index, "rows": rows}).encode()


def document(rng: random.Random, index: int) -> bytes:
    items = [
        {"id": i, "name": f"user {i}", "active": i % 3 == 0, "score": rng.randint(0, 100)}
        for i in range(index * 10, index * 10 + 260)
    ]
    return json.dumps(items).encode()[:16384]


CORPORA: dict[str, tuple[Callable[[random.Random, int], bytes], int]] = {
    "chat 80-300 B": (chat, 1),
    "updates 1-4 KiB": (update, 1),
    "documents 16 KiB": (document, 10),
}


def syncws_encoder(**settings: Any) -> Callable[[bytes], bytes]:
    _, extension = ServerPerMessageDeflateFactory(**settings).negotiate(BROWSER_OFFER, [])
    return lambda data: extension.encode(Frame(Opcode.TEXT, data)).payload


def websockets_encoder() -> Callable[[bytes], bytes] | None:
    try:
        from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
        from websockets.frames import Frame as WsFrame
        from websockets.frames import Opcode as WsOpcode
    except ImportError:
        return None
    (factory,) = enable_server_permessage_deflate(None)
    _, extension = factory.process_request_params(BROWSER_OFFER, [])
    return lambda data: extension.encode(WsFrame(WsOpcode.TEXT, data)).data


def run(encode: Callable[[bytes], bytes], messages: list[bytes]) -> tuple[float, float]:
    start = time.perf_counter()
    compressed = sum(len(encode(message)) for message in messages)
    elapsed = time.perf_counter() - start
    return compressed / sum(map(len, messages)), elapsed / len(messages) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="per corpus (documents: /10)")
    args = parser.parse_args()
    candidates: dict[str, Callable[[], Callable[[bytes], bytes] | None]] = {
        "syncws defaults": syncws_encoder,
        "syncws keep_state": lambda: syncws_encoder(keep_state=True),
        "syncws 15 bits, mem_level 8": lambda: syncws_encoder(
            server_max_window_bits=15, mem_level=8
        ),
        "syncws 15/8, keep_state (old)": lambda: syncws_encoder(
            server_max_window_bits=15, mem_level=8, keep_state=True
        ),
        "websockets defaults": websockets_encoder,
    }
    print(f"{'settings':<32}" + "".join(f"{name:>28}" for name in CORPORA))
    print(f"{'':<32}" + f"{'ratio   us/msg':>28}" * len(CORPORA))
    for label, make in candidates.items():
        cells = []
        for make_message, divisor in CORPORA.values():
            rng = random.Random(42)
            messages = [make_message(rng, i) for i in range(args.messages // divisor)]
            encode = make()
            if encode is None:
                cells.append(f"{'(not installed)':>28}")
                continue
            ratio, micros = run(encode, messages)
            cells.append(f"{ratio:>18.3f} {micros:>9.1f}")
        print(f"{label:<32}" + "".join(cells), flush=True)


if __name__ == "__main__":
    main()
