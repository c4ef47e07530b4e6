"""Reading the socket: bytes into the protocol, events to the core's routing. Part of the core.

Functions over a ``ConnectionCore`` (core.py), called with its ``_lock``
held unless their docstring says they take it (``receive_handshake``,
``peek``, ``poll_readable``, for the thread doing the opening handshake):
the core's job of reading, split out by job. ``read_available`` is one
read turn, by whoever reads: the thread in ``recv()`` (``read_until``), the
thread doing the opening handshake (``receive_handshake``, ``peek``) or the
reactor (the core's ``_on_readable``). It reads into a pooled buffer, feeds
``protocol.receive_data``, queues the core's automatic replies (pongs, close
frames) through the core's ``_emit`` and asks the reactor to write them;
then the core routes the events (``_process_events``).

Bounded work. One read turn feeds the parser a budget (the core's
``set_receive_budget``): the messages the inbox still has room for, and
``_TURN_SIZE`` bytes of payload (after decompression; as received for a
compressed message, which waits so and is inflated by the thread that
takes it: ``inflate``). Once it is spent the
parser pauses, the rest stays in the core's buffer and in the socket (TCP
pushes back), and nobody reads: ``max_queue`` holds exactly, compressed or
not. Frames held in the core's buffer are parsed at the next turn
(``_parse_held``): the reactor schedules it with ``call_soon``, since the
socket may have nothing new to make ``epoll`` fire.

Waiting. A thread that reads waits in ``poll`` with ``_lock`` released,
counted in ``_io_users`` so that a close from another thread leaves the
descriptor open until it is back (every poll site: ``read_until``, both
handshakes, and the writer in driver.py). After its wait, a thread in
``recv()`` takes the process's read turn (``READ_TURN``, below) before
``_lock``, and gives it back before it waits again and when it returns.

The receive buffers are shared by every thread that reads: a reader takes
one for a single read and gives it back at once, so a thousand handler
threads waiting in ``recv()`` hold none. Anonymous memory is resident only
where written, and the last one returned is the next one taken (its pages
are warm). The pool relies on ``list.pop()`` and ``list.append()`` being
atomic (the GIL; free-threaded CPython locks each list per operation). While
the protocol gathers a big frame, plain TCP reads go straight into that
frame's storage instead (``receive_buffer()``): what the frame still needs
in one read, ``_RECV_SIZE`` at most when the background thread reads.
The background thread's reads of plain TCP keep the GIL on Linux; a thread
in ``recv()`` lets it go for its read (runtime/heldio.py says why).

The short road. A thread in ``recv()`` with no message waiting whose read
brings exactly one whole message of one frame takes it straight from the
protocol (``Protocol.receive_message``), past the inbox and the routing:
``read_until`` returns it. Anything else (a partial frame, several frames,
a control frame, compression, an error) goes the usual way.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import TYPE_CHECKING

from ...exceptions import ConcurrencyError, ProtocolError
from ...protocol.connection import State
from ...protocol.events import Binary, Deflated, Text
from ...protocol.http11 import Request, Response
from ..deadline import Deadline
from ..net.tls_in_tls import TLSInTLS
from ..runtime.heldio import RecvBuffer, recv_into
from ..runtime.poller import RECV_EVENTS, wait_for
from ..runtime.reactor import reactor
from ..runtime.turn import ReadTurn
from .logs import logging_frames
from .transport import TransportState

if TYPE_CHECKING:
    from .core import ConnectionCore
    from .inbox import Data, Inbox, Queued

__all__ = [
    "EVENT",
    "FRAME",
    "LOCK_RETRY",
    "MESSAGE",
    "READ_TURN",
    "inflate",
    "peek",
    "poll_readable",
    "read_available",
    "read_until",
    "receive_handshake",
    "start_reading",
    "take_frame",
    "unwatch",
    "wait_readable",
    "watch",
]

#: Seconds before the background thread tries again to read a connection whose
#: ``_lock`` another thread holds (the core's ``_on_readable``). Not at its next
#: turn: a holder that lost the GIL, or writes TLS under the lock, would have it
#: spinning, each turn a GIL hand-off that the holder then waits behind.
LOCK_RETRY = 0.001

#: What ``read_until`` waits for: a whole message, one frame, a message or a ping/pong.
MESSAGE, FRAME, EVENT = 0, 1, 2

_RECV_SIZE = 256 * 1024
# Bytes read in one go by the reactor before it lets other connections run.
_READ_BUDGET = 1024 * 1024
# Bytes of payload parsed in one turn (plus one frame): compressed ones as received.
_TURN_SIZE = 1024 * 1024

# The read turn: a thread in recv() takes it when its wait is over and holds it
# while it reads and parses (non-blocking work), never while it waits. When
# every peer sends at once, every handler thread wakes at once: with it, they
# queue here, asleep without the GIL's timed wake-ups (5 ms each, for each
# waiter), instead of all competing for the GIL after every system call; and
# one reader at a time needs a pooled buffer. Where the accelerator is built
# the wait and the turn need no GIL in between, so the woken threads don't
# even queue for the GIL first (runtime/turn.py). Process-wide; taken with
# no lock held, before a connection's ``_lock`` (never the reverse); the
# reactor and the handshakes never take it.
READ_TURN = ReadTurn()

_free_buffers: list[RecvBuffer] = []
# Buffers kept for reuse; more than this many readers at once allocate extras.
_MAX_FREE_BUFFERS = 16


def _take_buffer() -> RecvBuffer:
    try:
        return _free_buffers.pop()
    except IndexError:
        return RecvBuffer(_RECV_SIZE)


def _give_back_buffer(buffer: RecvBuffer) -> None:
    if len(_free_buffers) < _MAX_FREE_BUFFERS:
        _free_buffers.append(buffer)
    # Else dropped: its memory is unmapped with the last reference.


def _tls_pending(sock: socket.socket) -> int:
    """Bytes TLS holds (TLS in TLS: either layer) but hasn't returned yet: poll can't see them."""
    assert isinstance(sock, (ssl.SSLSocket, TLSInTLS))
    return sock.pending()


def wait_readable(core: ConnectionCore, deadline: Deadline, turn: bool = False) -> bool:
    """Wait until the socket is readable, ``_lock`` released meanwhile (lock held).

    Counted in ``_io_users``: a close meanwhile leaves the descriptor open
    until this thread is back. False at the deadline. ``turn``: take the
    read turn (``READ_TURN``) once the wait is over, before ``_lock``; the
    caller releases it.
    """
    core._io_users += 1
    core._lock.release()
    try:
        if turn:
            return READ_TURN.wait_then_acquire(core.socket, core._fd, RECV_EVENTS, deadline)
        return wait_for(core.socket, RECV_EVENTS, deadline)
    finally:
        core._lock.acquire()
        core._io_users -= 1
        if core._transport is TransportState.CLOSED:
            core._release_socket_if_unused()


def poll_readable(core: ConnectionCore, deadline: Deadline) -> bool:
    """``wait_readable`` for a thread that doesn't hold ``_lock`` (the server's handshake)."""
    with core._lock:
        return wait_readable(core, deadline)


def _ready(core: ConnectionCore, want: int) -> bool:
    inbox = core._inbox
    if want == MESSAGE:
        return inbox.messages > 0
    if want == FRAME:
        return bool(inbox.frames)
    return inbox.messages > 0 or bool(inbox.controls)


def read_until(core: ConnectionCore, want: int, deadline: Deadline) -> Data | None:
    """Read the socket in this thread until the inbox has what ``want`` says (lock held).

    For ``MESSAGE``, with no message waiting: a read that brought exactly one
    whole message (``Protocol.receive_message``) returns it, past the inbox;
    else None once the inbox has it. The caller hands the socket back to the
    reactor (``_resume_watch``) when it is done. Raise ``ConnectionClosed``
    when nothing more can arrive and ``TimeoutError`` when the deadline passes.
    """
    protocol = core.protocol
    if protocol.failure_pending:
        # The application took the messages that came before the error.
        protocol.fail_pending()
        core._process_events()
        if _ready(core, want):
            return None
    # Take the socket from the reactor while this thread reads it.
    core._reader_thread = True
    unwatch(core)
    # Plain TCP: poll before the first read. poll returns at once when
    # bytes wait, and a peer that answers in turn (request, response)
    # usually has sent nothing yet: this saves a read that would fail.
    # TLS may hold decrypted bytes that poll can't see: read first.
    # Frames held in the core's buffer need no poll either.
    poll_first = not core._tls and not deadline.expired() and not core._parse_held
    # A whole message may skip the inbox only if no frame waits in it, and the
    # routing only if it has nothing to log (checked before each read).
    whole = want == MESSAGE
    turn = False
    try:
        while True:
            if poll_first:
                poll_first = False
            else:
                message = read_available(
                    core, whole=whole and not core._inbox.frames and not logging_frames()
                )
                if message is not None:
                    core._inbox.arrived += 1  # taken as it came
                    return message
                if _ready(core, want):
                    return None
            if core._transport >= TransportState.CLOSED or not protocol.receiving:
                raise core._closed_exception()
            if deadline.expired():
                raise deadline.timeout_error("waiting for a message")
            if core._parse_held:
                continue  # more frames wait in the core's buffer: parse them first
            if turn:
                turn = False
                READ_TURN.release()
            turn = True  # wait_readable takes it, whatever happens in the wait
            wait_readable(core, deadline, turn=True)
    finally:
        if turn:
            READ_TURN.release()
        core._reader_thread = False


def start_reading(core: ConnectionCore) -> Inbox:
    """Mark the inbox taken by this thread (lock held); one thread at a time.

    Raises:
        ConcurrencyError: another thread is in ``recv()`` or ``recv_streaming()``.
    """
    inbox = core._inbox
    if inbox.busy:
        raise ConcurrencyError(
            "another thread is already in recv() or recv_streaming() on this connection"
        )
    inbox.busy = True
    return inbox


def take_frame(core: ConnectionCore) -> Text | Binary:
    """The next frame for ``recv_streaming()``, reading until one comes (takes ``_lock``).

    A compressed frame is inflated here, after ``_lock`` is released (the
    inbox stays busy: ``recv_streaming()`` holds it).
    """
    with core._lock:
        frame = core._inbox.take_frame()
        if frame is None:
            try:
                read_until(core, FRAME, Deadline(None))
            finally:
                core._resume_watch(later=True)
            frame = core._inbox.take_frame()
            assert frame is not None
        if frame.final:
            core._resume_watch(later=True)
    if isinstance(frame, Deflated):
        return inflate(core, [frame])[0]
    return frame


def inflate(core: ConnectionCore, frames: list[Queued]) -> list[Text | Binary]:
    """Inflate a compressed message's frames, in the thread that took them (no lock held).

    The inbox stays ``busy`` (the caller clears it): nobody takes the next
    message meanwhile, so messages inflate in wire order, and the reactor
    (which try-locks ``_lock``) never waits for it. An error fails the
    connection (1007, 1009), drops what waits, and raises the
    ``ConnectionClosedError`` that a protocol error met while parsing does.
    """
    protocol = core.protocol
    try:
        return [
            protocol.inflate(frame) if isinstance(frame, Deflated) else frame for frame in frames
        ]
    except ProtocolError as exc:
        error = exc
    with core._lock:
        protocol.fail_inflate(error)
        core._process_events()
        core._inbox.drop()
        closed = core._closed_exception()  # its cause: protocol_error, as when parsing
    raise closed


def receive_handshake(core: ConnectionCore, deadline: Deadline) -> Request | Response | None:
    """Read until the peer's request or response arrives; None if the handshake failed.

    Raise ``TimeoutError`` at the deadline. Runs in the thread doing the
    handshake, before anyone else knows about the connection (takes ``_lock``).
    """
    with core._lock:
        while core._handshake_event is None:
            if (
                core._transport >= TransportState.CLOSED
                or core.protocol.state is not State.CONNECTING
            ):
                return None
            read_available(core)
            if core._handshake_event is not None:
                break
            if core.protocol.state is not State.CONNECTING:
                return None
            if deadline.expired():
                raise deadline.timeout_error("waiting for the opening handshake")
            wait_readable(core, deadline)
        return core._handshake_event


def peek(core: ConnectionCore, size: int) -> bytes | None:
    """The first bytes received, without taking them; None if none came yet (takes ``_lock``)."""
    with core._lock:
        try:
            return core.socket.recv(size, socket.MSG_PEEK)
        except BlockingIOError:
            return None
        except OSError:  # reset, or closed by a shutdown meanwhile
            return b""


def read_available(
    core: ConnectionCore, budget: int = _READ_BUDGET, *, whole: bool = False
) -> Data | None:
    """Read what the socket has (up to ``budget`` bytes) and process it (lock held).

    The parser's budget bounds the work: see "Bounded work" above. ``whole``
    (a thread in ``recv()``, no message waiting): when the first read brings
    exactly one whole message (``Protocol.receive_message``), return it
    instead of queueing it; else None.
    """
    if core._transport >= TransportState.CLOSED:
        return None
    sock = core.socket
    protocol = core.protocol
    outbox = core._outbox
    write_limit = core.write_limit
    tls = core._tls
    plain = not tls
    fd = core._fd
    # While closing, read on until the closing handshake ends, full queue or not.
    closing = protocol.state is State.CLOSING
    messages = None if closing else core._inbox.room(core.max_queue)
    protocol.set_receive_budget(messages, _TURN_SIZE)
    # A peer that pings without reading our pongs: its pings wait until it
    # catches up, then the latest is answered (RFC 6455 5.5.3 allows it;
    # the writer's answer_owed_ping in driver.py is the other half).
    protocol.answer_pings = outbox.backlog() <= write_limit
    if core._parse_held:
        core._parse_held = whole = False
        protocol.receive_data(b"")
        if core._emit():
            core._flush_later()
    buffer = _take_buffer()
    got = 0
    message: Data | None = None
    try:
        while got < budget and not protocol.receive_paused:
            # A big frame being gathered: read into its storage, saving a copy.
            target = protocol.receive_buffer() if plain else None
            if target is not None and not core._reader_thread and len(target) > _RECV_SIZE:
                # The background thread reads one pool read's worth at a time.
                target = target[:_RECV_SIZE]
            wanted = _RECV_SIZE if target is None else len(target)
            try:
                if target is None:
                    size = recv_into(sock, fd, buffer, plain and not core._reader_thread)
                else:
                    size = sock.recv_into(target)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                core._drained = True
                break
            except OSError as exc:
                core._on_eof(exc)
                break
            finally:
                if target is not None:
                    target.release()
            if not size:
                core._on_eof()
                break
            got += size
            full = size == wanted
            # Only the first read, and only if it was all there was (TLS may hold more).
            short = whole and not full and not (tls and _tls_pending(sock))
            whole = False
            if target is None:
                with memoryview(buffer.memory)[:size] as data:
                    if short:
                        message = protocol.receive_message(data)
                    if message is None:
                        protocol.answer_pings = outbox.backlog() <= write_limit
                        protocol.receive_data(data)
            else:
                protocol.answer_pings = outbox.backlog() <= write_limit
                protocol.received_into(size, more=full)
            # The writer may have caught up meanwhile, before the ping was owed.
            owed = protocol.pong_owed and outbox.backlog() <= write_limit
            if owed:
                protocol.send_owed_pong()
            # Pongs and close frames, counted before the next read (the short road makes none).
            if (owed or message is None) and core._emit():
                core._flush_later()
            if not full and not (tls and _tls_pending(sock)):  # always so after the short road
                core._drained = True
                break  # drained, most likely: poll will tell if not
            core._drained = False  # a full read: more is probably waiting
    finally:
        _give_back_buffer(buffer)
    if got:
        core._last_received = time.monotonic()
    if message is not None:
        return message  # one message and nothing else: no event to route, no frame held
    # Stopped on the budget with bytes held in TLS (TLS inside TLS holds up to
    # a read's worth): poll can't see them, so they wait like held frames.
    core._parse_held = protocol.receive_paused or (got >= budget and tls and _tls_pending(sock) > 0)
    core._process_events()
    return None


# -- handing the socket between a reading thread and the reactor (lock held) ----------


def watch(core: ConnectionCore, later: bool = False) -> None:
    """Let the reactor read the socket while no thread is in ``recv()`` (lock held).

    ``later``: a ``recv()`` is returning, and its thread will likely call
    again at once; arm the reactor only if it doesn't within a tick, which
    saves two system calls per message in a request/response loop. Any
    other caller arms it now (upgrading a deferred watch).
    """
    # Only when the last read emptied the socket, or the core holds frames
    # the thread will parse itself: a peer that streams (more bytes
    # waiting) is better read ahead by the reactor at once. And not while
    # closing: the closing handshake needs reading now.
    held = core._parse_held
    later = later and (core._drained or held) and core.protocol.state is State.OPEN
    if core._transport >= TransportState.CLOSED or (
        core._watched and (later or not core._watch_later)
    ):
        return
    if core._watched and held:
        reactor.unwatch_read(core._fd)  # drop the deferred watch: called below
    core._watched = True
    core._watch_later = later
    if later:
        reactor.watch_read_later(core._fd, core._on_readable, pending=held)
    elif held:
        # Frames wait in the core: epoll can't see them. Parse them at the
        # next turn, after the other connections ready now.
        reactor.call_soon(core._on_readable)
    else:
        reactor.watch_read(core._fd, core._on_readable)


def unwatch(core: ConnectionCore) -> None:
    if core._watched:
        core._watched = False  # a call_soon pending finds nothing to do
        reactor.unwatch_read(core._fd)
