"""Calls made with the GIL held (runtime/heldio.py): the outcomes of Python's own calls."""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from syncws.threaded.connection import reader
from syncws.threaded.runtime import gather, heldio
from syncws.threaded.runtime import reactor as reactor_module
from syncws.threaded.runtime.heldio import (
    HELD_IO,
    SMALL_SEND,
    RecvBuffer,
    epoll_modify,
    epoll_register,
    epoll_unregister,
    recv_into,
    send_small,
)
from syncws.threaded.runtime.reactor import Reactor

from .helpers import WAIT, connected_pair, wait_until


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("plain", [True, False])
def test_reads_what_waits_then_would_block_then_eof(
    pair: tuple[socket.socket, socket.socket], plain: bool
) -> None:
    a, b = pair
    buffer = RecvBuffer(64)
    b.sendall(b"hello")
    assert recv_into(a, a.fileno(), buffer, plain) == 5
    assert buffer.memory[:5] == b"hello"
    with pytest.raises(BlockingIOError):
        recv_into(a, a.fileno(), buffer, plain)
    b.sendall(b"x" * 100)
    assert recv_into(a, a.fileno(), buffer, plain) == 64  # at most the buffer's size
    assert recv_into(a, a.fileno(), buffer, plain) == 36
    b.shutdown(socket.SHUT_WR)
    assert recv_into(a, a.fileno(), buffer, plain) == 0


@pytest.mark.parametrize("plain", [True, False])
def test_a_reset_raises_connection_reset(plain: bool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        client.setblocking(False)
        # Close with RST: linger on, timeout 0.
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()
        buffer = RecvBuffer(64)
        with pytest.raises(ConnectionResetError):
            while True:  # the RST may trail the close by a moment: would-block until then
                try:
                    recv_into(client, client.fileno(), buffer, plain)
                except BlockingIOError:
                    select.select([client], [], [], 5)


def test_held_calls_are_on_here_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # Linux (CI): libc loads, unless SYNCWS_HELD_IO=0 (.ci/portable.sh) says no.
    assert HELD_IO is (os.environ.get("SYNCWS_HELD_IO", "") in ("", "1"))
    assert (RecvBuffer(16).address != 0) is HELD_IO
    monkeypatch.setenv("SYNCWS_HELD_IO", "0")
    assert heldio._load_libc() is None
    monkeypatch.setenv("SYNCWS_HELD_IO", "1")
    assert heldio._load_libc() is not None


def test_without_held_reads_the_socket_reads(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    monkeypatch.setattr(heldio, "_recv", None)
    buffer = RecvBuffer(16)
    assert buffer.address == 0  # no address taken: the mmap alone
    b.sendall(b"abc")
    assert recv_into(a, a.fileno(), buffer, True) == 3
    assert buffer.memory[:3] == b"abc"


def test_other_errors_raise_os_error() -> None:
    a, b = socket.socketpair()
    b.close()
    fd = a.fileno()
    a.close()  # the descriptor is gone: EBADF
    with socket.socket() as unused, pytest.raises(OSError) as caught:
        recv_into(unused, fd, RecvBuffer(16), True)
    assert caught.value.errno is not None


@pytest.mark.parametrize("held", [True, False])
def test_small_sends_write_or_would_block(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch, held: bool
) -> None:
    a, b = pair
    if not held:
        monkeypatch.setattr(heldio, "_send", None)
    assert send_small(a, b"ping") == 4
    assert b.recv(16) == b"ping"
    chunk = b"x" * SMALL_SEND
    with pytest.raises(BlockingIOError):
        while True:  # fill the socket: a full one would block
            send_small(a, chunk)
    b.close()
    with pytest.raises(OSError):  # the peer is gone: EPIPE (no SIGPIPE), or a reset
        while True:
            send_small(a, b"after")


@pytest.fixture(params=[True, False], ids=["held", "python"])
def epoll(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An epoll object; the heldio calls on it held (libc), then as Python's."""
    if not hasattr(select, "epoll"):
        pytest.skip("Linux's epoll")
    if not request.param:
        monkeypatch.setattr(heldio, "_epoll_ctl", None)
    with select.epoll() as epoll:
        yield epoll


def test_epoll_modify_rearms_and_refuses_an_unknown_descriptor(
    pair: tuple[socket.socket, socket.socket], epoll: Any
) -> None:
    a, b = pair
    epoll.register(a.fileno(), select.EPOLLIN | select.EPOLLONESHOT)
    b.send(b"x")
    assert epoll.poll(WAIT_S) == [(a.fileno(), select.EPOLLIN)]
    assert epoll.poll(0) == []  # one-shot: disarmed
    epoll_modify(epoll, a.fileno(), select.EPOLLIN | select.EPOLLONESHOT)
    assert epoll.poll(WAIT_S) == [(a.fileno(), select.EPOLLIN)]  # armed again
    with pytest.raises(FileNotFoundError):
        epoll_modify(epoll, b.fileno(), select.EPOLLIN)


def test_epoll_register_and_unregister_as_python_does(
    pair: tuple[socket.socket, socket.socket], epoll: Any
) -> None:
    a, b = pair
    epoll_register(epoll, a.fileno(), select.EPOLLIN | select.EPOLLONESHOT)
    with pytest.raises(FileExistsError):
        epoll_register(epoll, a.fileno(), select.EPOLLIN)
    b.send(b"x")
    assert epoll.poll(WAIT_S) == [(a.fileno(), select.EPOLLIN)]
    epoll_unregister(epoll, a.fileno())
    with pytest.raises(FileNotFoundError):
        epoll_modify(epoll, a.fileno(), select.EPOLLIN)
    with pytest.raises(FileNotFoundError):
        epoll_unregister(epoll, a.fileno())


def test_the_reactor_wakes_with_a_held_write(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under the reactor's lock: a write that let go of the GIL would hold the lock
    # while its thread waits for the GIL again, and the background thread behind it.
    written: list[bytes] = []
    held_send = heldio.send_small

    def recording(sock: socket.socket, data: bytes) -> int:
        written.append(data)
        return held_send(sock, data)

    monkeypatch.setattr(reactor_module, "send_small", recording)
    own = Reactor()
    ran = threading.Event()
    own.call_soon(ran.set)  # from this thread: wakes the reactor's thread
    assert ran.wait(WAIT)
    own.call_soon(ran.clear)
    wait_until(lambda: not ran.is_set())
    assert written
    wait_until(lambda: not own.thread_running())


WAIT_S = 10.0


def test_a_thread_in_recv_lets_go_of_the_gil_for_its_reads_and_the_background_thread_never(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A thread in recv() holds the read turn: letting go of the GIL for its
    # read lets a crowd of woken handlers queue on the turn (heldio.py).
    reads: list[tuple[int | None, bool]] = []
    real = reader.recv_into

    def recording(sock: socket.socket, fd: int, buffer: RecvBuffer, held: bool) -> int:
        reads.append((threading.get_ident(), held))
        return real(sock, fd, buffer, held)

    monkeypatch.setattr(reader, "recv_into", recording)
    with connected_pair() as (client, server):
        got: list[object] = []
        reading = threading.Thread(target=lambda: got.append(server.recv(timeout=WAIT)))
        reading.start()
        wait_until(lambda: server._reader_thread)  # in recv(), reading the socket itself
        client.send("to a thread in recv()")
        reading.join(WAIT)
        assert got == ["to a thread in recv()"]
        assert reads and set(reads) == {(reading.ident, False)}
        reads.clear()
        pong = server.ping()  # read by the background thread: no recv() waits
        assert pong.wait(WAIT)
        assert reads and all(held and ident != reading.ident for ident, held in reads)


def test_a_send_that_may_wait_lets_go_of_the_gil_and_a_ping_or_pong_keeps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # send() may wait for the peer anyway: Python's call, which costs less
    # than the held one when no other thread wants the GIL. The background
    # thread's writes never wait: held (gather.py, heldio.py).
    held: list[int] = []
    real = gather.send_small

    def recording(sock: socket.socket, data: bytes) -> int:
        held.append(threading.get_ident())
        return real(sock, data)

    monkeypatch.setattr(gather, "send_small", recording)
    with connected_pair() as (client, server):
        client.send("small")
        assert server.recv(timeout=WAIT) == "small"
        assert held == []
        pong = client.ping()  # written without waiting, and answered by a background thread
        assert pong.wait(WAIT)
        assert threading.get_ident() in held
        assert set(held) - {threading.get_ident()}
