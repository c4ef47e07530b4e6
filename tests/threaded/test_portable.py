"""The portable paths, run on Linux: macOS' poll, Windows' select and its writer without sendmsg.

The whole threaded suite runs in each mode too (``.ci/portable.sh`` sets
``SYNCWS_POLLER`` and ``SYNCWS_NO_SENDMSG``); the tests here switch modes
within one process, and check what the suite can't see from outside: which
path ran, the select poller's limits, and a process whose ``select`` module
has what Windows' has and no more.
"""

from __future__ import annotations

import os
import select
import selectors
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from syncws import Connection, broadcast, serve
from syncws.protocol import Protocol, Side
from syncws.protocol.events import Binary, Text
from syncws.threaded.deadline import Deadline
from syncws.threaded.runtime import gather, poller
from syncws.threaded.runtime.poller import wait_for
from syncws.threaded.runtime.reactor import Reactor, reactor

from .helpers import WAIT, connected_pair, wait_until

pytestmark = pytest.mark.timeout(60)

#: The mechanisms Linux can run, with the writer each platform has.
MODES = {
    "select": ("select", False),  # Windows
    "poll": ("poll", True),  # macOS
    "epoll": ("epoll", True),  # Linux
}


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Force one platform's paths for this test (the reactor thread is idle between tests)."""
    name, sendmsg = MODES[request.param]
    wait_until(lambda: not reactor.thread_running())
    monkeypatch.setattr(poller, "POLLER", name)
    monkeypatch.setattr(poller, "WAKE_SLICE", None if name == "epoll" else 0.1)
    monkeypatch.setattr(gather, "USE_SENDMSG", sendmsg)
    yield name
    # The reactor thread may still run the forced poller: let it finish first.
    wait_until(lambda: not reactor.thread_running())


class NoSendmsg(socket.socket):
    """A socket whose ``sendmsg`` must not be called (as on Windows)."""

    def sendmsg(self, *args: object, **kwargs: object) -> int:
        raise AssertionError("sendmsg() called without USE_SENDMSG")


def pair(**kwargs: object) -> tuple[Connection, Connection]:
    """A client and a server ``Connection`` over a socketpair (without sendmsg if so forced)."""
    ends: list[socket.socket] = list(socket.socketpair())
    if not gather.USE_SENDMSG:
        ends = [NoSendmsg(fileno=end.detach()) for end in ends]
    made = []
    for sock, side in zip(ends, (Side.CLIENT, Side.SERVER), strict=True):
        sock.setblocking(False)
        connection = Connection(sock, Protocol(side, max_size=None), **kwargs)  # type: ignore[arg-type]
        connection.start_background()
        made.append(connection)
    return made[0], made[1]


# -- choosing --------------------------------------------------------------------


def test_the_fastest_mechanism_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert poller.choose(None) == "epoll"
    assert poller.choose("") == "epoll"
    assert poller.choose(" Select ") == "select"
    monkeypatch.delattr(select, "epoll")  # macOS
    assert poller.choose(None) == "poll"
    monkeypatch.delattr(select, "poll")  # Windows
    assert poller.choose(None) == "select"


def test_a_bad_or_missing_mechanism_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="expected one of epoll, poll, select"):
        poller.choose("kqueue")
    monkeypatch.delattr(select, "epoll")
    with pytest.raises(ValueError, match=r"this system has no select\.epoll"):
        poller.choose("epoll")


# -- one socket, one thread ----------------------------------------------------------


def test_wait_for_returns_when_ready_and_at_the_deadline(mode: str) -> None:
    a, b = socket.socketpair()
    with a, b:
        assert wait_for(a, poller.SEND_EVENTS, Deadline(WAIT))
        assert not wait_for(a, poller.RECV_EVENTS, Deadline(0.01))
        assert not wait_for(a, poller.RECV_EVENTS, Deadline(0))
        b.send(b"x")
        assert wait_for(a, poller.RECV_EVENTS, Deadline(WAIT))


def test_a_wait_without_deadline_ends_with_its_slice(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Off epoll, a thread waiting alone looks at its connection again now and then.
    monkeypatch.setattr(poller, "WAKE_SLICE", 0.01)
    a, b = socket.socketpair()
    with a, b:
        assert not wait_for(a, poller.RECV_EVENTS, Deadline(None))


def test_shutting_the_socket_down_wakes_a_waiting_thread(mode: str) -> None:
    a, b = socket.socketpair()
    results: list[bool] = []
    with a, b:
        waiter = threading.Thread(
            target=lambda: results.append(wait_for(a, poller.RECV_EVENTS, Deadline(WAIT)))
        )
        waiter.start()
        a.shutdown(socket.SHUT_RDWR)
        waiter.join(WAIT)
    assert results == [True]


@pytest.mark.skipif(sys.platform == "win32", reason="Windows limits the count, not the numbers")
def test_select_refuses_descriptors_past_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poller, "POLLER", "select")
    a, b = socket.socketpair()
    with a, b, socket.socket(fileno=os.dup2(a.fileno(), poller.FD_SETSIZE + 10)) as high:
        # A clear error, not select's own "filedescriptor out of range".
        with pytest.raises(ValueError, match="too large for select"):
            wait_for(high, poller.RECV_EVENTS, Deadline(0))
        with pytest.raises(ValueError, match="too large for select"):
            poller.SelectPoller().arm(high.fileno(), poller.READABLE)


# -- the reactor's pollers -------------------------------------------------------------


def test_reactor_watches_fire_once_in_every_mode(mode: str) -> None:
    own = Reactor()
    a, b = socket.socketpair()
    read, write, timer = threading.Event(), threading.Event(), threading.Event()
    with a, b:
        own.watch_read(a.fileno(), read.set)
        own.watch_write(a.fileno(), write.set)  # the same descriptor, both ways
        assert write.wait(WAIT)
        own.call_later(0.001, timer.set)
        assert timer.wait(WAIT)
        assert not read.is_set()
        b.send(b"x")
        assert read.wait(WAIT)
        # Disarmed once fired: armed again, it fires again.
        read.clear()
        own.watch_read(a.fileno(), read.set)
        assert read.wait(WAIT)
        own.forget(a.fileno())
    wait_until(lambda: not own.thread_running())


def test_select_beyond_its_limit_watches_every_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    # Windows: 512 sockets per select() call. With a limit of 4, 16 sockets take 5
    # groups (with the wake-up socket); the first ones armed stay idle, so those
    # that become readable are all in groups the reactor doesn't block on.
    monkeypatch.setattr(poller, "POLLER", "select")
    monkeypatch.setattr(poller, "SELECT_LIMIT", 4)
    own = Reactor()
    idle = [socket.socketpair() for _ in range(8)]
    busy = [socket.socketpair() for _ in range(8)]
    fired = [threading.Event() for _ in busy]
    try:
        for a, _ in idle:
            own.watch_read(a.fileno(), lambda: None)
        for (a, _), event in zip(busy, fired, strict=True):
            own.watch_read(a.fileno(), event.set)
        for _, b in reversed(busy):
            b.send(b"x")
        for event in fired:
            assert event.wait(WAIT)
        # The wake-up socket stays in the group it waits on: timers still fire.
        tick = threading.Event()
        own.call_later(0.001, tick.set)
        assert tick.wait(WAIT)
    finally:
        for a, b in idle + busy:
            own.forget(a.fileno())
            a.close()
            b.close()
    wait_until(lambda: not own.thread_running())


@pytest.mark.parametrize("make", [poller.SelectPoller, poller.PollPoller])
def test_a_descriptor_closed_while_armed_is_reported_once(make: type[poller.Poller]) -> None:
    # Without forget(), as a bug would: select() fails with EBADF (WSAENOTSOCK on
    # Windows) and poll() reports POLLNVAL. Either way the watch fires, no spin.
    polling = make()
    a, b = socket.socketpair()
    good = a.fileno()
    try:
        b.send(b"x")
        with socket.socket() as doomed:
            bad = doomed.fileno()
            polling.arm(bad, poller.READABLE)
        polling.arm(good, poller.READABLE)
        ready = dict(polling.wait(WAIT))
        assert ready[bad] & poller.POLLNVAL
        polling.fired(bad)
        ready = dict(polling.wait(WAIT))
        assert set(ready) == {good}
        assert ready[good] & poller.POLLIN
    finally:
        polling.close()
        a.close()
        b.close()


# -- the writer's gather ---------------------------------------------------------------


@pytest.mark.parametrize("sendmsg", [False, True], ids=["send", "sendmsg"])
@pytest.mark.parametrize(
    "sizes",
    [[10], [10, 20, 30], [100_000, 10], [10, 100_000, 10], [60_000, 60_000], [1] * 600],
    ids=["one", "small", "big-first", "top-up", "two-halves", "many"],
)
def test_send_chunks_sends_the_front_of_the_queue_in_order(
    sendmsg: bool, sizes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gather, "USE_SENDMSG", sendmsg)
    chunks: list[bytes | memoryview] = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    chunks[-1] = memoryview(chunks[-1])  # the writer's queue holds both
    expected = b"".join(chunks)
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(WAIT)
        sent = gather.send_chunks(a, chunks)
        assert 0 < sent <= len(expected)
        if not sendmsg:
            # Never one copy larger than a gather, unless a chunk goes alone.
            assert sent <= max(gather.GATHER_BYTES, len(chunks[0]))
        received = b""
        while len(received) < sent:
            received += b.recv(sent - len(received))
        assert received == expected[:sent]


# -- connections ----------------------------------------------------------------------


def test_recv_and_send_keep_their_timeouts(mode: str) -> None:
    with connected_pair() as (client, _):
        with pytest.raises(TimeoutError):
            client.recv(timeout=0.05)
        with pytest.raises(TimeoutError):
            client.recv(timeout=0)
    # A peer that doesn't read, and more than the kernel's buffers hold.
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    server = Connection(ours, Protocol(Side.SERVER))
    server.start_background()
    try:
        with pytest.raises(TimeoutError, match="doesn't read"):
            server.send(b"x" * (8 << 20), timeout=0.05)
        with pytest.raises(TimeoutError):
            server.send("after", timeout=0.05)
        # Nothing was lost: the peer gets both, whole and in order, once it reads.
        peer = Protocol(Side.CLIENT, max_size=None)
        theirs.settimeout(WAIT)
        events: list[object] = []
        while len(events) < 2:
            peer.receive_data(theirs.recv(1 << 20))
            events += peer.events_received()
        assert events == [Binary(b"x" * (8 << 20)), Text("after")]
    finally:
        server._abort()
        theirs.close()


def test_the_portable_writer_never_interleaves_frames(mode: str) -> None:
    client, server = pair(write_limit=1 << 30)
    rounds, senders = 100, 3
    start = threading.Barrier(senders + 1)

    def send(index: int) -> None:
        start.wait()
        for i in range(rounds):
            if i % 2:
                server.send([f"{index}:", "frag", "ment"])  # three frames, one message
            else:
                server.send(f"{index}:{i}:" + "z" * 70_000)  # longer than one gather

    threads = [threading.Thread(target=send, args=(index,)) for index in range(senders)]
    try:
        for thread in threads:
            thread.start()
        start.wait()
        for i in range(rounds):
            broadcast([server], f"broadcast {i}")
        messages = [str(client.recv(timeout=WAIT)) for _ in range((senders + 1) * rounds)]
        for thread in threads:
            thread.join(WAIT)
        assert [m for m in messages if m.startswith("broadcast")] == [
            f"broadcast {i}" for i in range(rounds)
        ]
        for index in range(senders):
            mine = [m for m in messages if m.startswith(f"{index}:")]
            assert mine == [
                f"{index}:fragment" if i % 2 else f"{index}:{i}:" + "z" * 70_000
                for i in range(rounds)
            ]
    finally:
        client._abort()
        server._abort()


def test_the_portable_writer_skips_a_stuck_peer(mode: str) -> None:
    stuck_client, stuck = pair(write_limit=64 * 1024)
    good = [pair(write_limit=1 << 30) for _ in range(2)]
    count, size = 200, 16 * 1024
    received: list[list[bytes]] = [[] for _ in good]

    def read(index: int, client: Connection) -> None:
        received[index] = [client.recv(timeout=WAIT) for _ in range(count)]  # type: ignore[misc]

    readers = [
        threading.Thread(target=read, args=(index, client))
        for index, (client, _) in enumerate(good)
    ]
    try:
        for reader in readers:
            reader.start()
        for i in range(count):
            # stuck_client never reads: its side's kernel buffers fill, then its backlog.
            broadcast([stuck] + [s for _, s in good], i.to_bytes(4, "big") * (size // 4))
        for reader in readers:
            reader.join(WAIT)
        for messages in received:
            assert [int.from_bytes(m[:4], "big") for m in messages] == list(range(count))
        assert stuck.skipped_messages > 0
        assert stuck.buffered_amount <= 64 * 1024 + size
        # What the stuck peer gets once it reads: whole messages, in order, with gaps.
        got = []
        for _ in range(count - stuck.skipped_messages):
            message = stuck_client.recv(timeout=WAIT)
            assert len(message) == size
            got.append(int.from_bytes(message[:4], "big"))  # type: ignore[arg-type]
        assert got == sorted(set(got))
    finally:
        for client, server in [(stuck_client, stuck), *good]:
            client._abort()
            server._abort()


# -- a select module as Windows' --------------------------------------------------------

WINDOWS_SELECT = """
import select
for name in [n for n in dir(select) if n.startswith(("poll", "epoll", "POLL", "EPOLL"))]:
    delattr(select, name)
"""

MACOS_SELECT = """
import select
for name in [n for n in dir(select) if n.startswith(("epoll", "EPOLL"))]:
    delattr(select, name)
"""

ROUND_TRIP = """
import syncws
from syncws.testing import run_server
from syncws.threaded.runtime import gather, poller


def echo(connection):
    for message in connection:
        connection.send(message)


with run_server(echo) as server:
    with syncws.connect(server.uri, open_timeout=10) as client:
        client.send("hello")
        assert client.recv(timeout=10) == "hello"
        client.send(["frag", "ment"])
        assert client.recv(timeout=10) == "fragment"
        try:
            client.recv(timeout=0.05)
        except TimeoutError:
            pass
        else:
            raise AssertionError("no TimeoutError")
print(poller.POLLER, gather.USE_SENDMSG)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("prelude", "expected"),
    [(WINDOWS_SELECT, "select False"), (MACOS_SELECT, "poll True")],
    ids=["windows", "macos"],
)
def test_connect_works_with_what_each_platform_has(prelude: str, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWS_")}
    if expected.endswith("False"):
        env["SYNCWS_NO_SENDMSG"] = "1"  # a C type's method can't be deleted
    script = textwrap.dedent(prelude) + ROUND_TRIP
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT * 4,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected.split()


def test_serve_forever_looks_up_now_and_then(monkeypatch: pytest.MonkeyPatch) -> None:
    # On Windows, Ctrl-C doesn't interrupt select(): its KeyboardInterrupt is raised
    # when select() returns. A flag set while nothing wakes the selector stands in.
    monkeypatch.setattr(poller, "WAKE_SLICE", 0.01)
    waiting = threading.Event()

    class Selector(selectors.DefaultSelector):
        def select(self, timeout: float | None = None) -> list[Any]:
            waiting.set()
            return super().select(timeout)

    monkeypatch.setattr(selectors, "DefaultSelector", Selector)
    with serve(lambda connection: None, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        assert waiting.wait(WAIT)
        server._stopping = True  # a plain store: the server has no lock (see Server)
        thread.join(WAIT)
        assert not thread.is_alive()


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (10048, "another program already listens"),  # WSAEADDRINUSE
        (10049, "isn't configured on any interface"),  # WSAEADDRNOTAVAIL
    ],
)
def test_windows_error_codes_get_the_same_hints(
    code: int, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Windows socket's OSError carries its Winsock code as errno.
    def fail(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(code, "Winsock says no")

    monkeypatch.setattr(socket, "create_server", fail)
    with pytest.raises(OSError, match=hint) as caught:
        serve(lambda connection: None, "127.0.0.1", 8765)
    assert caught.value.errno == code
