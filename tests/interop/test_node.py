"""Node's ``ws`` as a peer, in both roles: its client against our server, our
client against its server.

``node/peer.mjs`` runs ``ws`` and speaks JSON lines with the test: it reports
what it sees (``{"event": "message", "sha256": ...}``) and does what it is told
(``{"cmd": "send", ...}``). Events come in a deterministic order, so each test
expects them one by one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pytest

import syncws
from syncws import ClientConnection, ServerConnection
from syncws.protocol.deflate import PerMessageDeflate
from syncws.testing import run_server

from .peers import MESSAGES, MIB, WAIT, EchoRecorder, LineReader, message, require

pytestmark = pytest.mark.timeout(60)

NODE = shutil.which("node")
PEER = Path(__file__).parent / "node" / "peer.mjs"
WS_PACKAGE = PEER.parent / "node_modules" / "ws" / "package.json"

#: How ws negotiates permessage-deflate in each case; None: it doesn't.
DEFLATE: dict[str, dict[str, Any] | None] = {
    "deflate": {},
    # Every parameter of RFC 7692, with windows smaller than zlib's default.
    "deflate-tight": {
        "serverNoContextTakeover": True,
        "clientNoContextTakeover": True,
        "serverMaxWindowBits": 10,
        "clientMaxWindowBits": 10,
    },
    "no-deflate": None,
}


@pytest.fixture(autouse=True)
def _node_and_ws() -> None:
    require(NODE is not None, "Node.js", "Debian: apt-get install nodejs npm")
    require(WS_PACKAGE.exists(), "the ws npm package", f"npm ci --prefix {PEER.parent}")


class NodePeer:
    """``node peer.mjs ...``: commands in, events out, every wait bounded."""

    def __init__(self, *args: str) -> None:
        assert NODE is not None
        self.process = subprocess.Popen(
            [NODE, str(PEER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self._output = LineReader(self.process.stdout)

    def __enter__(self) -> NodePeer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Once its connection is closed, the peer exits by itself; after a failed
        # test it may still be connected.
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process.communicate(timeout=WAIT)  # and close the pipes

    def do(self, cmd: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        self.process.stdin.flush()

    def expect(self, event: str, **fields: Any) -> dict[str, Any]:
        """The next event must be ``event`` with these fields; return all of it."""
        line = self._output.readline(WAIT)
        if line is None:
            self.process.wait(WAIT)
            assert self.process.stderr is not None
            stderr = self.process.stderr.read().decode(errors="replace")
            raise AssertionError(
                f"node exited ({self.process.returncode}) before {event}: {stderr}"
            )
        got: dict[str, Any] = json.loads(line)
        assert got["event"] == event, got
        for name, value in fields.items():
            assert got.get(name) == value, (name, got)
        return got

    def expect_message(self, data: str | bytes) -> None:
        payload = data.encode() if isinstance(data, str) else data
        self.expect(
            "message",
            binary=isinstance(data, bytes),
            length=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
        )

    def expect_exit(self) -> None:
        assert self.process.wait(WAIT) == 0


def node_flags(deflate: str) -> list[str]:
    options = DEFLATE[deflate]
    return [] if options is None else [f"--deflate={json.dumps(options)}"]


def our_compression(deflate: str) -> Literal["deflate"] | None:
    return None if DEFLATE[deflate] is None else "deflate"


def check_negotiated(deflate: str, connection: syncws.Connection, node_view: str) -> None:
    """Both sides agree on the extension, as ws configured it."""
    extensions = connection.protocol.extensions
    if DEFLATE[deflate] is None:
        assert extensions == []
        assert node_view == ""
        return
    assert [type(e) for e in extensions] == [PerMessageDeflate]
    assert node_view.startswith("permessage-deflate")
    if deflate == "deflate-tight":
        (extension,) = extensions
        assert isinstance(extension, PerMessageDeflate)
        assert extension.local_no_context_takeover and extension.remote_no_context_takeover
        windows = (extension.local_max_window_bits, extension.remote_max_window_bits)
        # Our server binds itself and ws to the windows ws offered (10 < our 12).
        assert windows == (10, 10)


def fragments(data: str | bytes, count: int) -> list[str] | list[bytes]:
    step = -(-len(data) // count)
    return [data[i : i + step] for i in range(0, len(data), step)]  # type: ignore[return-value]


# -- a Node client, our server ----------------------------------------------------------------


@contextlib.contextmanager
def node_client(
    deflate: str = "deflate",
) -> Iterator[tuple[NodePeer, EchoRecorder, ServerConnection]]:
    """Our recording echo server and a ws client connected to it."""
    recorder = EchoRecorder()
    compression = our_compression(deflate)
    with (
        run_server(recorder, compression=compression) as server,
        NodePeer("client", server.uri, *node_flags(deflate)) as node,
    ):
        opened = node.expect("open")
        connection = recorder.connections.get(timeout=WAIT)
        check_negotiated(deflate, connection, opened["extensions"])
        yield node, recorder, connection


@pytest.mark.parametrize("deflate", DEFLATE)
def test_node_client_echo(deflate: str) -> None:
    with node_client(deflate) as (node, recorder, _):
        for size, kind in MESSAGES:
            node.do("send", size=size, binary=kind == "binary")
            node.expect_message(message(size, kind))
            assert recorder.received.get(timeout=WAIT) == message(size, kind)
        # ws splits where it is told, even inside a UTF-8 character.
        for size, kind, count in [(MIB, "text", 7), (MIB, "binary", 3), (32, "text", 32)]:
            node.do("send", size=size, binary=kind == "binary", fragments=count)
            node.expect_message(message(size, kind))
            assert recorder.received.get(timeout=WAIT) == message(size, kind)
        node.do("close", code=1000, reason="done")
        node.expect("close", code=1000)
        node.expect_exit()
        assert recorder.closed.get(timeout=WAIT) == (1000, "done")


def test_node_client_pings_and_pongs() -> None:
    with node_client() as (node, recorder, connection):
        assert connection.ping(b"from syncws").wait(WAIT)
        node.expect("ping", hex=b"from syncws".hex())
        node.do("ping", hex=b"from ws \x00\xff".hex())
        node.expect("pong", hex=b"from ws \x00\xff".hex())
        node.do("ping")
        node.expect("pong", hex="")
        node.do("close")
        node.expect("close", code=1005)
        assert recorder.closed.get(timeout=WAIT) == (1005, "")


def test_node_client_closes_with_a_code_and_reason() -> None:
    reason = "ws says bye \u21c4"
    with node_client() as (node, recorder, connection):
        node.do("close", code=4001, reason=reason)
        assert recorder.closed.get(timeout=WAIT) == (4001, reason)
        assert connection.closed_by_us is False
        node.expect("close", code=4001, reason=reason)  # the echo
        node.expect_exit()


def test_our_server_closes_a_node_client() -> None:
    reason = "syncws says bye \u21c4"
    with node_client() as (node, recorder, connection):
        connection.close(4002, reason)
        node.expect("close", code=4002, reason=reason)
        node.expect_exit()
        assert recorder.closed.get(timeout=WAIT) == (4002, reason)  # ws echoes both
        assert connection.closed_by_us is True


# -- our client, a Node server ----------------------------------------------------------------


@contextlib.contextmanager
def node_server(deflate: str = "deflate") -> Iterator[tuple[NodePeer, ClientConnection]]:
    """A ws echo server and our client connected to it."""
    with NodePeer("server", "--echo", *node_flags(deflate)) as node:
        port = node.expect("listening")["port"]
        compression = our_compression(deflate)
        client = syncws.connect(f"ws://127.0.0.1:{port}/", compression=compression, proxy=None)
        with client:
            opened = node.expect("open")
            offered = opened["offered"] or ""
            assert offered.startswith("permessage-deflate") == (compression is not None)
            check_negotiated(deflate, client, opened["extensions"])
            yield node, client


@pytest.mark.parametrize("deflate", DEFLATE)
def test_our_client_echo_against_node_server(deflate: str) -> None:
    with node_server(deflate) as (node, client):
        for size, kind in MESSAGES:
            client.send(message(size, kind))
            node.expect_message(message(size, kind))
            assert client.recv(timeout=WAIT) == message(size, kind)
        for size, kind, count in [(MIB, "text", 5), (MIB, "binary", 3), (32, "text", 4)]:
            data = message(size, kind)
            client.send(fragments(data, count))
            node.expect_message(data)
            assert client.recv(timeout=WAIT) == data
        client.close(1000, "done")
        node.expect("close", code=1000, reason="done")
        node.expect_exit()
        assert (client.close_code, client.close_reason) == (1000, "done")


def test_our_client_pings_and_pongs_a_node_server() -> None:
    with node_server() as (node, client):
        assert client.ping(b"from syncws").wait(WAIT)
        node.expect("ping", hex=b"from syncws".hex())
        node.do("ping", hex=bytes(range(125)).hex())  # the largest control frame
        node.expect("pong", hex=bytes(range(125)).hex())
        client.pong(b"unsolicited")
        node.expect("pong", hex=b"unsolicited".hex())


def test_node_server_closes_our_client() -> None:
    reason = "ws says bye \u21c4"
    with node_server() as (node, client):
        node.do("close", code=4003, reason=reason)
        with pytest.raises(syncws.ConnectionClosedError) as closed:
            client.recv(timeout=WAIT)
        assert (closed.value.code, closed.value.reason) == (4003, reason)
        assert closed.value.we_closed_first is False
        node.expect("close", code=4003, reason=reason)  # our echo
        node.expect_exit()


def test_our_client_closes_a_node_server() -> None:
    reason = "syncws says bye \u21c4"
    with node_server() as (node, client):
        client.close(4004, reason)
        node.expect("close", code=4004, reason=reason)
        node.expect_exit()
        assert (client.close_code, client.close_reason) == (4004, reason)


def test_node_server_closes_our_client_without_a_code() -> None:
    with node_server() as (node, client):
        node.do("close")
        with pytest.raises(syncws.ConnectionClosedOK) as closed:
            client.recv(timeout=WAIT)
        assert closed.value.code == 1005
        node.expect("close", code=1005, reason="")
        node.expect_exit()
