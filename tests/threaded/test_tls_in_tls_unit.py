"""TLSInTLS alone: its inner TLS against a server SSLObject, through a scripted outer socket.

The fake outer socket stands for the proxy's ``SSLSocket`` on a perfect
network: the server runs whenever the client reads, and the test decides
when the outer socket can't take more bytes or fails.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from syncws.threaded.deadline import Deadline
from syncws.threaded.net.tls_in_tls import TLSInTLS, wrap_tls_in_tls

from .helpers import WAIT


class FakeOuter:
    """The outer socket: what the client sends goes to a server-side SSLObject."""

    def __init__(self, server_context: ssl.SSLContext) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.server = server_context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.to_client = bytearray()
        self.writable = True
        self.recv_error: OSError | None = None
        self.eof = False
        self.handshaken = False
        self.pair = socket.socketpair()  # a real descriptor for fileno()

    def _run_server(self) -> None:
        if not self.handshaken:
            try:
                self.server.do_handshake()
                self.handshaken = True
            except ssl.SSLWantReadError:
                pass
        self.to_client += self.outgoing.read()

    def server_read(self) -> bytes:
        self._run_server()
        data = b""
        while True:
            try:
                data += self.server.read(65536)
            except ssl.SSLWantReadError:
                return data

    def server_write(self, data: bytes) -> None:
        self.server.write(data)
        self._run_server()

    # -- what TLSInTLS calls -----------------------------------------------------------

    def recv(self, size: int) -> bytes:
        self._run_server()
        if self.to_client:
            data = bytes(self.to_client[:size])
            del self.to_client[:size]
            return data
        if self.recv_error is not None:
            raise self.recv_error
        if self.eof:
            return b""
        raise ssl.SSLWantReadError("nothing yet")

    def send(self, data: Any) -> int:
        if not self.writable:
            raise ssl.SSLWantWriteError("full")
        self.incoming.write(bytes(data))
        return len(data)

    def pending(self) -> int:
        return 0

    def setblocking(self, flag: bool) -> None:
        assert not flag

    def fileno(self) -> int:
        return self.pair[0].fileno()

    def close(self) -> None:
        for sock in self.pair:
            sock.close()


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pair(authority: trustme.CA) -> Iterator[tuple[TLSInTLS, FakeOuter]]:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    outer = FakeOuter(server_context)
    try:
        client = wrap_tls_in_tls(outer, client_context, "localhost", Deadline(WAIT))  # type: ignore[arg-type]
        yield client, outer
    finally:
        outer.close()


def test_send_keeps_its_records_until_the_outer_socket_takes_them(
    pair: tuple[TLSInTLS, FakeOuter],
) -> None:
    client, outer = pair
    data = bytes(range(256)) * 400
    outer.writable = False
    with pytest.raises(ssl.SSLWantWriteError):
        client.send(data)
    with pytest.raises(ssl.SSLWantWriteError):
        client.send(data)  # the retry, still full
    assert outer.server_read() == b""
    outer.writable = True
    assert client.send(data) == len(data)  # the retry: the records go, nothing more
    assert outer.server_read() == data
    assert client.send(b"next") == 4
    assert outer.server_read() == b"next"
    assert client.send(b"") == 0


def test_recv_into_returns_what_both_layers_hold(pair: tuple[TLSInTLS, FakeOuter]) -> None:
    client, outer = pair
    buffer = bytearray(10)
    with pytest.raises(ssl.SSLWantReadError):
        client.recv_into(buffer)
    outer.server_write(b"a" * 1000)
    assert client.recv_into(buffer) == 10
    assert client.pending() == 990  # decrypted, waiting: poll can't see it
    big = bytearray(4096)
    assert client.recv_into(big, 500) == 500
    assert client.recv_into(big) == 490
    assert client.pending() == 0
    outer.server_write(b"b" * 100)
    outer.to_client, undecrypted = bytearray(), bytes(outer.to_client)
    client._incoming.write(undecrypted)  # a record read from the outer layer, not decrypted
    assert client.pending() == len(undecrypted)
    assert client.recv_into(big) == 100


def test_an_error_after_bytes_comes_with_the_next_read(pair: tuple[TLSInTLS, FakeOuter]) -> None:
    client, outer = pair
    outer.server_write(b"last words")
    outer.recv_error = ConnectionResetError("reset")
    buffer = bytearray(100)
    assert client.recv_into(buffer) == 10
    assert buffer[:10] == b"last words"
    with pytest.raises(ConnectionResetError):
        client.recv_into(buffer)


def test_eof_without_close_notify_reads_as_eof(pair: tuple[TLSInTLS, FakeOuter]) -> None:
    client, outer = pair
    outer.server_write(b"bye")
    outer.eof = True
    buffer = bytearray(100)
    assert client.recv_into(buffer) == 3
    assert client.recv_into(buffer) == 0
    assert client.recv_into(buffer) == 0
    assert client.pending() == 0


def test_close_notify_reads_as_eof(pair: tuple[TLSInTLS, FakeOuter]) -> None:
    client, outer = pair
    outer._run_server()  # the server takes the client's Finished
    with contextlib.suppress(ssl.SSLWantReadError):
        outer.server.unwrap()  # sends close_notify (and would wait for ours)
    outer._run_server()
    assert client.recv_into(bytearray(100)) == 0


def test_what_it_refuses(pair: tuple[TLSInTLS, FakeOuter]) -> None:
    client, _ = pair
    with pytest.raises(ValueError, match="flags"):
        client.recv_into(bytearray(10), 0, socket.MSG_PEEK)
    with pytest.raises(ValueError, match="flags"):
        client.send(b"x", socket.MSG_OOB)
    with pytest.raises(ValueError, match="non-blocking"):
        client.setblocking(True)
    client.setblocking(False)
    assert client.server_hostname == "localhost"
    assert client.version() is not None
    assert client.cipher() is not None
    assert "localhost" in repr(client)
