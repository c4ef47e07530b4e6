"""One deadline for the whole opening sequence, against peers that drip their answers.

Each peer answers one byte at a time, a byte every ``INTERVAL`` seconds, for
far longer than ``open_timeout``: a client that gave each read the whole
remaining time again (a socket timeout set once) would wait for every byte.
The tests check the error the client raises, and that the client hung up
while the peer still had bytes to drip: the peer counts its bytes, no test
reads a clock. Issue 31 item 1.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

import syncws
from syncws.threaded.deadline import Deadline
from syncws.threaded.net.socks import recv_within, send_within
from syncws.threaded.net.tls_in_tls import wrap_tls

from .helpers import WAIT
from .test_faults_net import tls_proxy

#: Seconds between two dripped bytes.
INTERVAL = 0.2
#: The client's open_timeout: a handful of intervals.
OPEN_TIMEOUT = 1.0
#: Bytes dripped before the peer gives up and hangs up itself: 30 intervals,
#: six times open_timeout. A client bounded by its deadline hangs up long before.
DRIP = 30


class HungUp(Exception):
    """The client closed the connection."""


class Dripper:
    """What the dripping peer saw: bytes dripped, and whether the client hung up first."""

    def __init__(self, client: socket.socket, stop: threading.Event) -> None:
        self.client = client
        self.stop = stop
        self.dripped = 0
        self.hung_up = False

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes from the client; ``HungUp`` at its EOF."""
        data = b""
        while len(data) < size:
            chunk = self.client.recv(size - len(data))
            if not chunk:
                raise HungUp
            data += chunk
        return data

    def read_head(self) -> bytes:
        """An HTTP request's head."""
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.read(1)
        return head

    def drip(self, data: bytes) -> None:
        """Send ``data`` a byte every ``INTERVAL``; ``HungUp`` once the client is gone."""
        for byte in data:
            if self.stop.wait(INTERVAL):
                raise HungUp  # the test is over
            if self._client_is_gone():
                raise HungUp
            try:
                self.client.sendall(bytes([byte]))
            except OSError:
                raise HungUp from None
            self.dripped += 1

    def _client_is_gone(self) -> bool:
        readable, _, _ = select.select([self.client], [], [], 0)
        if not readable:
            return False
        try:
            return not self.client.recv(65536)  # what the client sent meanwhile, or EOF
        except OSError:
            return True


class Peer:
    """The dripping peer's port, and its ``Dripper`` once the script ran."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[Dripper] = []

    def assert_client_hung_up_early(self) -> None:
        """The client hung up at its deadline: within the first half of the drips.

        open_timeout lasts 5 intervals: the other 10 are slack for a loaded machine.
        """
        (dripper,) = self.seen
        assert dripper.hung_up, f"the client waited for all {dripper.dripped} bytes"
        assert dripper.dripped <= DRIP // 2, f"the client hung up after {dripper.dripped} bytes"


@contextlib.contextmanager
def dripping_peer(script: Callable[[Dripper], None]) -> Iterator[Peer]:
    """A one-connection peer running ``script`` in a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    stop = threading.Event()
    peer = Peer(listener.getsockname()[1])

    def serve() -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        with client:
            client.settimeout(WAIT)
            dripper = Dripper(client, stop)
            try:
                script(dripper)
            except HungUp:
                dripper.hung_up = not stop.is_set()
            peer.seen.append(dripper)

    thread = threading.Thread(target=serve, name="test-dripping-peer")
    thread.start()
    try:
        yield peer
    finally:
        # The client is gone: the peer notices at its next byte. On a client
        # that kept waiting, the peer drips everything first (DRIP intervals).
        thread.join(WAIT)
        stop.set()
        thread.join(WAIT)
        listener.close()


# -- the scripts ----------------------------------------------------------------------------


def slow_http_proxy(peer: Dripper) -> None:
    """Reads a CONNECT request, then drips an answer whose head never ends."""
    peer.read_head()
    peer.drip(b"HTTP/1.1 200 Connection established\r\nX-Slow: " + b"a" * DRIP)


def slow_socks5_proxy(peer: Dripper) -> None:
    """Drips both of SOCKS5's answers, at a byte per interval."""
    peer.read(3)  # version 5, one method, no authentication
    peer.drip(b"\x05\x00")
    request = peer.read(4)
    peer.read({1: 4, 4: 16}.get(request[3], 0) + 2)
    peer.drip(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50" * 3)


def slow_tls_server(peer: Dripper) -> None:
    """Reads a ClientHello, then drips a TLS record that never ends (16 KiB announced)."""
    peer.client.recv(65536)
    peer.drip(b"\x16\x03\x03\x40\x00" + b"\x02" * DRIP)


def slow_websocket_server(peer: Dripper) -> None:
    """Reads the upgrade request, then drips a 101 answer whose head never ends."""
    peer.read_head()
    peer.drip(b"HTTP/1.1 101 Switching Protocols\r\nX-Slow: " + b"a" * DRIP)


# -- the phases --------------------------------------------------------------------------------


def test_http_connect_proxy_dripping_its_answer() -> None:
    with dripping_peer(slow_http_proxy) as peer:
        proxy = f"http://127.0.0.1:{peer.port}"
        with pytest.raises(TimeoutError, match=r"timed out after 1s while waiting for the proxy"):
            syncws.connect("ws://127.0.0.1:9/", proxy=proxy, open_timeout=OPEN_TIMEOUT)
    peer.assert_client_hung_up_early()


def test_socks5_proxy_dripping_its_answers() -> None:
    with dripping_peer(slow_socks5_proxy) as peer:
        proxy = f"socks5://127.0.0.1:{peer.port}"
        with pytest.raises(TimeoutError, match=r"timed out after 1s while .*SOCKS proxy"):
            syncws.connect("ws://127.0.0.1:9/", proxy=proxy, open_timeout=OPEN_TIMEOUT)
    peer.assert_client_hung_up_early()


def test_https_proxy_dripping_its_tls_handshake() -> None:
    with dripping_peer(slow_tls_server) as peer:
        proxy = f"https://127.0.0.1:{peer.port}"
        with pytest.raises(TimeoutError, match=r"timed out after 1s while .*TLS handshake"):
            syncws.connect("ws://127.0.0.1:9/", proxy=proxy, open_timeout=OPEN_TIMEOUT)
    peer.assert_client_hung_up_early()


def test_wss_server_dripping_its_tls_handshake() -> None:
    with dripping_peer(slow_tls_server) as peer:
        uri = f"wss://127.0.0.1:{peer.port}/"
        with pytest.raises(TimeoutError, match=r"timed out after 1s while .*TLS handshake"):
            syncws.connect(uri, proxy=None, open_timeout=OPEN_TIMEOUT)
    peer.assert_client_hung_up_early()


@pytest.fixture
def proxy_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """An https:// proxy's context; its CA is trusted through SSL_CERT_FILE."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "proxy-ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    return context


def test_wss_server_dripping_its_tls_handshake_inside_the_proxys(
    proxy_context: ssl.SSLContext,
) -> None:
    with dripping_peer(slow_tls_server) as peer, tls_proxy(proxy_context) as (proxy_port, _):
        uri = f"wss://127.0.0.1:{peer.port}/"
        with pytest.raises(TimeoutError, match=r"timed out after 1s while .*TLS handshake"):
            syncws.connect(uri, proxy=f"https://127.0.0.1:{proxy_port}", open_timeout=OPEN_TIMEOUT)
    peer.assert_client_hung_up_early()


def test_websocket_server_dripping_its_handshake() -> None:
    with dripping_peer(slow_websocket_server) as peer:
        uri = f"ws://127.0.0.1:{peer.port}/"
        with pytest.raises(TimeoutError, match=r"timed out after 1s"):
            syncws.connect(uri, proxy=None, open_timeout=OPEN_TIMEOUT)
    peer.assert_client_hung_up_early()


# -- a deadline already passed: no call at all -----------------------------------------------


def test_nothing_is_tried_once_the_deadline_passed() -> None:
    passed = Deadline(0)
    left, right = socket.socketpair()
    with left, right:
        with pytest.raises(TimeoutError, match="while waiting for the proxy"):
            send_within(left, b"x", passed, "waiting for the proxy")
        with pytest.raises(TimeoutError, match="while waiting for the proxy"):
            recv_within(left, 1, passed, "waiting for the proxy")
        with pytest.raises(TimeoutError, match="while the TLS handshake with peer"):
            wrap_tls(
                left, ssl.create_default_context(), "peer", passed, "the TLS handshake with peer"
            )
        right.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing was sent
            right.recv(1)


def test_a_send_that_the_peer_never_reads_times_out() -> None:
    left, right = socket.socketpair()
    with left, right, pytest.raises(TimeoutError, match="while waiting for the proxy"):
        send_within(left, b"x" * 10_000_000, Deadline(0.2), "waiting for the proxy")
