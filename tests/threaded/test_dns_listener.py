"""The edges of dns.py (bounded lookups, connecting) and listener.py (503 drain, listen errors)."""

from __future__ import annotations

import errno
import socket
import threading

import pytest

from syncws.threaded.deadline import Deadline
from syncws.threaded.net import dns
from syncws.threaded.server import listener

from .helpers import WAIT

pytestmark = pytest.mark.timeout(30)


def test_a_lookup_thread_that_cannot_start_gives_its_slot_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    for _ in range(dns.MAX_LOOKUPS + 1):  # every slot would be gone without the release
        with pytest.raises(RuntimeError, match="can't start"):
            dns.resolve("localhost", 80, Deadline(WAIT))


def test_connecting_past_the_deadline_names_the_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[socket.socket] = []

    def slow(self: socket.socket, address: object) -> None:
        closed.append(self)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket.socket, "connect", slow)
    with pytest.raises(TimeoutError, match="connecting to the test peer"):
        dns.open_tcp("127.0.0.1", 9, Deadline(WAIT), "the test peer")
    assert closed and all(sock.fileno() == -1 for sock in closed)


def test_an_interrupted_connect_closes_its_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[socket.socket] = []

    def interrupted(self: socket.socket, address: object) -> None:
        opened.append(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(socket.socket, "connect", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dns.open_tcp("127.0.0.1", 9, Deadline(WAIT), "the test peer")
    assert opened and opened[0].fileno() == -1


class _FakeSocket:
    """What _Drain reads from: scripted results of recv(), then closed."""

    def __init__(self, results: list[bytes | type[BaseException]]) -> None:
        self.results = results
        self.closed = threading.Event()
        self._pair = socket.socketpair()

    def fileno(self) -> int:
        return self._pair[0].fileno()

    def recv(self, size: int) -> bytes:
        result = self.results.pop(0)
        if isinstance(result, bytes):
            return result
        raise result

    def close(self) -> None:
        for sock in self._pair:
            sock.close()
        self.closed.set()


@pytest.mark.parametrize("error", [BlockingIOError, ConnectionResetError])
def test_the_503_drain_reads_until_eof_or_error(error: type[OSError]) -> None:
    # A spurious wake-up (BlockingIOError) keeps draining; a reset closes at once.
    fake = _FakeSocket([error, b""] if error is BlockingIOError else [error])
    drain = listener._Drain(fake)  # type: ignore[arg-type]
    drain._on_readable()
    if error is BlockingIOError:
        assert not fake.closed.is_set()
        drain._on_readable()
    assert fake.closed.wait(WAIT)
    drain._close()  # the timer firing after EOF does nothing more


def test_refuse_busy_without_a_server_header() -> None:
    ours, theirs = socket.socketpair()
    with theirs:
        listener.refuse_busy(ours, None)
        head = theirs.recv(65536)
        assert head.startswith(b"HTTP/1.1 503 ")
        assert b"\r\nServer:" not in head
        theirs.shutdown(socket.SHUT_WR)  # EOF: the drain closes our side
        assert theirs.recv(1) == b""


def test_listen_passes_on_errors_it_has_no_hint_for(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: object, **kwargs: object) -> socket.socket:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socket, "create_server", denied)
    with pytest.raises(PermissionError, match="Permission denied"):
        listener.listen("127.0.0.1", 80, 16)
