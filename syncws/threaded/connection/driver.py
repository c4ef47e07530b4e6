"""Sending: the writer's loop, data frames, fragmented messages, broadcasts. Part of the core.

Functions over a ``ConnectionCore`` (core.py): the core's job of sending,
split out by job. Bytes reach the outbox only through the core's ``_emit``
(the send choke point), but for a broadcast's prepared frames, which
``offer_broadcast`` appends as they are once it checked what
``send_prepared`` checks; this module decides what the protocol sends and
writes the outbox.

The writer (``flush``). Whichever thread gets ``_write_lock`` first writes
the outbox (``Outbox.write``: one system call, reporting drained, partial or
blocked; a lost connection raises) and the core acts: a sender with a
deadline waits in ``poll`` (counted in ``_io_users``), the reactor never
waits and leaves the rest for when the socket is writable (the core's
``_flush_later``). ``_lock`` is taken inside ``_write_lock`` only for a TLS
write (the reader shares the TLS object), a write error, a pong owed to the
peer (``_answer_owed_ping``) and the FIN once closing: the order is
``_write_lock`` -> ``_lock``, never the reverse. Without TLS a write that
drains the outbox takes no ``_lock`` at all: it reads ``_transport`` (one
attribute) to know whether FIN is due.

Threads: ``flush`` runs in senders (``send``, ``close``, handshakes, with a
deadline) and in the reactor (``_on_writable``, keepalive, without one),
holding no lock when called. ``send_fragments`` runs in the sending thread
with the send mutex held (it takes ``_lock`` per frame, through ``_drive``).
The other functions run with ``_lock`` held, in the thread that calls them
(``keepalive_turn``: the reactor), but ``offer_broadcast`` and
``queue_whole`` (``send()``'s short road for a whole message), which take
it (the broadcasting or sending thread).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any

from ...protocol.close_codes import CloseCode
from ...protocol.connection import State
from ..deadline import Deadline
from ..runtime.poller import SEND_EVENTS, wait_for
from ..runtime.reactor import reactor
from .inbox import Data
from .keepalive import keepalive_payload, later_spread
from .logs import ConnectionLogger, frames_logger, logging_frames
from .outbox import Wrote
from .transport import TransportState

if TYPE_CHECKING:
    from .core import ConnectionCore
    from .keepalive import PendingPing

__all__ = [
    "UNKNOWN_KEY",
    "BytesLike",
    "Prepared",
    "begin_close",
    "fail_protocol",
    "flush",
    "frame_to_protocol",
    "keepalive_turn",
    "offer_broadcast",
    "queue_whole",
    "send_fragments",
    "send_ping",
    "start_closing",
    "take_send_mutex",
]

BytesLike = (bytes, bytearray, memoryview)

_CLOSED = TransportState.CLOSED
#: ``ConnectionCore._sharing_key`` before the first broadcast asks the protocol.
UNKNOWN_KEY: Any = object()


# -- the writer -------------------------------------------------------------------------


def flush(core: ConnectionCore, deadline: Deadline | None) -> None:
    """Write the outbox; block until it is empty when given a deadline (no lock held).

    Without a deadline (the reactor, automatic replies) never block: what
    can't be written now is left to the reactor to write when the socket
    becomes writable. Raise ``TimeoutError`` when the deadline passes
    (what's left stays queued) and ``ConnectionClosed`` if the connection
    was lost.
    """
    outbox = core._outbox
    write_lock = core._write_lock
    while outbox.chunks:
        if deadline is None:
            if not write_lock.acquire(blocking=False):
                return  # the thread holding it writes our bytes too
        elif not write_lock.acquire(blocking=False):
            remaining = deadline.remaining()
            if not write_lock.acquire(timeout=-1 if remaining is None else remaining):
                core._flush_later()
                raise deadline.timeout_error("waiting for another thread's write")
        try:
            drained = _write_outbox(core, deadline)
        finally:
            write_lock.release()
        if not drained:
            return
    if core._lost is not None and deadline is not None:
        raise core._closed_exception()


def _write_outbox(core: ConnectionCore, deadline: Deadline | None) -> bool:
    """Write queued bytes (write lock held); False if left to the reactor."""
    outbox = core._outbox
    sock = core.socket
    tls = core._tls
    protocol = core.protocol
    while outbox.chunks:
        if core._transport >= TransportState.CLOSED:
            outbox.clear()
            if deadline is not None:
                with core._lock:
                    core._changed.wait_for(core._is_closed)
                raise core._closed_exception()
            return True
        try:
            if tls:
                with core._lock:
                    wrote = outbox.write(sock, True)
            else:
                # Writes that never wait keep the GIL (the background thread's:
                # heldio.py); a sender that may wait lets it go, as Python does.
                wrote = outbox.write(sock, False, deadline is None)
        except OSError as exc:
            outbox.clear()
            with core._lock:
                core._on_eof(exc)
                core._process_events()
            if deadline is not None:
                raise core._closed_exception() from exc
            return True
        if wrote is Wrote.BLOCKED:
            if deadline is None:
                core._flush_later()
                return False
            if deadline.expired():
                core._flush_later()
                raise deadline.timeout_error("writing to a peer that doesn't read")
            _wait_writable(core, deadline)
        elif protocol.pong_owed:
            _answer_owed_ping(core)  # the backlog went down: maybe below write_limit
    # FIN is due once closing and written. _transport only moves forward: a
    # close that starts after this read finds the outbox empty and sends FIN itself.
    if core._transport >= TransportState.DRAINING:
        with core._lock:
            closing = TransportState.DRAINING <= core._transport < TransportState.CLOSED
            if closing and not outbox.chunks:
                core._shutdown_write()
    return True


def _wait_writable(core: ConnectionCore, deadline: Deadline) -> None:
    # Write lock held, not _lock: counted in _io_users like every poll.
    with core._lock:
        core._io_users += 1
    try:
        wait_for(core.socket, SEND_EVENTS, deadline)
    finally:
        with core._lock:
            core._io_users -= 1
            core._release_socket_if_unused()


def _answer_owed_ping(core: ConnectionCore) -> None:
    """Pings waited while the backlog was over ``write_limit``: answer the latest.

    Called by the writer as the backlog goes down (write lock held, not ``_lock``).
    """
    if core._outbox.backlog() > core.write_limit:
        return
    with core._lock:
        if core.protocol.pong_owed:
            core.protocol.send_owed_pong()
            core._emit()


# -- application messages ---------------------------------------------------------------


def take_send_mutex(core: ConnectionCore, deadline: Deadline) -> None:
    """Acquire ``_send_mutex``, waiting until ``deadline``; the caller releases it."""
    if not core._send_mutex.acquire(blocking=False):
        remaining = deadline.remaining()
        if not core._send_mutex.acquire(timeout=-1 if remaining is None else remaining):
            raise deadline.timeout_error("waiting for another thread's send")


def send_ping(core: ConnectionCore, data: bytes) -> PendingPing:
    """``ping()``: send a ping and remember it (lock held, connection open)."""
    core._pings.check_new(data)
    core.protocol.send_ping(data)  # may raise: then nothing is remembered
    core._expect_from_reactor()  # the pong may come while no thread reads
    return core._pings.add(core, data)


def frame_to_protocol(
    core: ConnectionCore,
    data: Data | bytearray | memoryview,
    text: bool | None,
    first: bool,
    fin: bool,
) -> None:
    """Have the protocol send one data frame (lock held, connection open)."""
    protocol = core.protocol
    if not first:
        protocol.send_continuation(data, fin=fin)
    elif text if text is not None else isinstance(data, str):
        protocol.send_text(data if isinstance(data, (str, bytes)) else bytes(data), fin=fin)
    else:
        protocol.send_binary(data.encode() if isinstance(data, str) else data, fin=fin)
    if logging_frames():
        ConnectionLogger(frames_logger, core.logger.extra).debug(
            "> data frame of %d bytes, fin=%s", len(data), fin
        )
    if fin and core._deferred:
        core._emit()  # the frame first, then the broadcasts held back behind it
        deferred, core._deferred = core._deferred, None
        core._deferred_bytes = 0
        for payload, is_text, frames in deferred:
            _queue_message(core, payload, is_text, frames)


def queue_whole(core: ConnectionCore, message: Data, text: bool | None) -> bool:
    """``send()``'s short road for a whole message: frame it and queue it; False if it can't.

    It can when no other thread sends (the send mutex is free), nothing was
    held back for after a fragmented message, frames aren't logged and the
    protocol frames the message at once (``Protocol.frame_message``: open,
    no extension, under 64 KiB). The caller writes the outbox (``flush``)
    as after the usual road, which it takes on False. Any thread, no lock held.
    """
    mutex = core._send_mutex
    if not mutex.acquire(blocking=False):
        return False
    try:
        with core._lock:
            if core._deferred or logging_frames():
                return False
            # The protocol's output is empty here: whoever holds _lock queues it
            # (_emit) before letting go, so the frame goes out in order.
            frame = core.protocol.frame_message(
                message, isinstance(message, str) if text is None else text
            )
            if frame is None:
                return False
            core._outbox.append_one(frame)
            return True
    finally:
        mutex.release()


def send_fragments(
    core: ConnectionCore, pieces: Iterator[Any], text: bool | None, deadline: Deadline
) -> None:
    """Send an iterable's pieces as one fragmented message (send mutex held).

    ``deadline`` bounds the whole message, waiting for the iterable's pieces
    included: past it, the message is half sent and can't be taken back, so
    the connection fails (see ``_abandon``).
    """
    try:
        first = next(pieces)
    except StopIteration:
        return
    if not isinstance(first, (str, *BytesLike)):
        raise TypeError(f"send() iterables yield str or bytes, not {type(first).__name__}")
    kind = str if isinstance(first, str) else BytesLike
    core._drive(frame_to_protocol, core, first, text, True, False, write=False)
    try:
        flush(core, deadline)
        for piece in pieces:
            if not isinstance(piece, kind):
                raise TypeError("send() iterables must yield all str or all bytes")
            if deadline.expired():
                raise deadline.timeout_error("waiting for the next piece of a message")
            core._drive(frame_to_protocol, core, piece, text, False, False, write=False)
            # Write as we go: the iterable may be long, or slow to produce.
            flush(core, deadline)
        if deadline.expired():
            raise deadline.timeout_error("waiting for the end of a message")
        core._drive(frame_to_protocol, core, b"", text, False, True, write=False)
    except BaseException as exc:
        # The message can't be completed or taken back: fail the connection.
        timed_out = isinstance(exc, TimeoutError)
        if not core._is_closed() and _abandon(core, timed_out) and timed_out:
            raise TimeoutError(
                f"{exc}; the peer hadn't read the message's first frames, so it was cut "
                "off and TCP closed without a close frame (close code 1006)"
            ) from exc
        raise


def _abandon(core: ConnectionCore, timed_out: bool) -> bool:
    """A fragmented message can't be finished: fail the connection (send mutex held).

    When everything sent so far was written, a close frame with 1011 follows
    it. When a write timed out, bytes still wait for a peer that doesn't
    read, and a close frame would wait behind them: TCP is closed at once,
    the peer reads a cut-off frame and EOF, and ``close_code`` is 1006 on
    both sides. True in that case.
    """
    with core._lock:
        cut = timed_out and core._outbox.backlog() > 0
        if cut:
            core.logger.info("fragmented send abandoned mid-frame: closing TCP (1006)")
            core._close_socket()
    if not cut:
        core._fail(CloseCode.INTERNAL_ERROR, "error while sending a fragmented message")
    return cut


# -- closing (lock held) -----------------------------------------------------------------


def begin_close(core: ConnectionCore, code: int, reason: str) -> None:
    """The first step of ``close()``: the close frame, or dropping an unopened connection."""
    protocol = core.protocol
    if protocol.state is State.OPEN:
        if protocol.sending_fragments:
            protocol.fail(CloseCode.INTERNAL_ERROR, "close() during a fragmented send")
        else:
            protocol.send_close(code, reason)
        core.logger.debug("sent close frame: %s %r", code, reason)
        core._process_events()
    elif protocol.state is State.CONNECTING:
        core._close_socket()


def start_closing(core: ConnectionCore, code: int, reason: str) -> None:
    """``start_closing()``: a close frame, or dropping a connection that sent nothing yet."""
    if core.protocol.state is State.OPEN:
        core.protocol.send_close(code, reason)
        core._process_events()
    elif core.protocol.state is State.CONNECTING and core._handshake_event is None:
        core._close_socket()  # nothing received yet: drop it


def fail_protocol(core: ConnectionCore, code: int, reason: str) -> None:
    """Fail the connection in the protocol: a close frame if it still can, then stop."""
    core.protocol.fail(code, reason)
    core._process_events()


# -- keepalive --------------------------------------------------------------------------


def keepalive_turn(core: ConnectionCore) -> bool:
    # Lock held: True if a ping went out.
    interval = core.ping_interval
    assert interval is not None
    pings = core._pings
    if core._transport >= TransportState.CLOSED or core.protocol.state is not State.OPEN:
        return False
    idle = time.monotonic() - core._last_received
    if idle < interval or pings.keepalive is not None:
        # Heard from lately, or still waiting for the last ping's pong.
        delay = interval - idle if idle < interval else interval
        # Later by up to a quarter: connections heard from together spread out.
        delay += later_spread(interval)
        pings.keepalive_timer = reactor.call_later(delay, core._on_keepalive)
        return False
    data = keepalive_payload()
    core.protocol.send_ping(data)
    pending = pings.keepalive = pings.add(core, data)
    pings.keepalive_timer = reactor.call_later(interval, core._on_keepalive)
    if core.ping_timeout is not None:
        pings.pong_timer = reactor.call_later(
            core.ping_timeout, functools.partial(core._on_ping_timeout, pending)
        )
    return True


# -- broadcasts -------------------------------------------------------------------------


def offer_broadcast(
    core: ConnectionCore,
    payload: bytes,
    text: bool,
    prepared: dict[Hashable, list[bytes]],
    overflow: int | None,
) -> bool | None:
    """Queue a broadcast message, never blocking (takes ``_lock``).

    See ``Connection.offer_broadcast``.

    The per-delivery path of ``broadcast()``, run once per connection per
    message: no ``_drive`` (no per-call closure, no second ``_emit``), the
    sharing key read once per connection, a prepared message's frames
    appended with their size computed once per broadcast (``Prepared``).
    """
    with core._lock:
        protocol = core.protocol
        if protocol.state is not State.OPEN:
            if protocol.state is State.CONNECTING:
                core._check_open()  # raises InvalidState
            return None
        outbox = core._outbox
        backlog = outbox.queued - outbox.written + core._deferred_bytes
        if backlog > core.write_limit:
            _report_skip(core, backlog, overflow)  # may queue a close frame
            accepted = False
        else:
            if core._skipping:
                core._skipping = False
                core.logger.info(
                    "broadcast: delivering again (%d skipped so far)", core.skipped_messages
                )
            key = core._sharing_key
            if key is UNKNOWN_KEY:
                # Fixed once open (the side and the negotiated extensions).
                key = core._sharing_key = protocol.sharing_key()
            frames: Prepared | None = None
            if key is not None:
                frames = prepared.get(key)  # type: ignore[assignment]
                if frames is None:
                    frames = Prepared(protocol.prepare_message(payload, text=text))
                    prepared[key] = frames
            if protocol.sending_fragments:
                # Never inside another message: after its final frame.
                if core._deferred is None:
                    core._deferred = []
                core._deferred.append((payload, text, frames))
                core._deferred_bytes += len(payload)
                return True
            if frames is not None:
                # What send_prepared() would check holds (open, no fragmented
                # message): the frames go to the outbox as they are, counted.
                outbox.append_sized(frames, frames.size)
                if key:  # extensions (an empty key: none): deflate's window follows
                    protocol.prepared_sent(payload)
            else:
                _queue_message(core, payload, text, None)
            accepted = True
        # The reactor writes it: broadcasts queued meanwhile go out in the same
        # syscall, and the caller never spends a syscall per connection.
        if not core._flush_scheduled and outbox.chunks and core._transport < _CLOSED:
            core._flush_scheduled = True
            core._flush_later()
    return accepted


class Prepared(list[bytes]):
    """A message's frames encoded once for every connection of a broadcast, and their size."""

    __slots__ = ("size",)

    def __init__(self, frames: list[bytes]) -> None:
        super().__init__(frames)
        self.size = sum(map(len, frames))


def _report_skip(core: ConnectionCore, backlog: int, overflow: int | None) -> None:
    # Lock held: the peer is too slow for broadcasts.
    core.skipped_messages += 1
    if overflow is not None:
        core.logger.warning(
            "broadcast: %d bytes waiting, past write_limit: closing with %d", backlog, overflow
        )
        core.protocol.send_close(overflow, "too slow to keep up")
        core._process_events()
    elif not core._skipping:
        core._skipping = True
        core.logger.warning(
            "broadcast: %d bytes waiting, past write_limit: skipping messages", backlog
        )


def _queue_message(
    core: ConnectionCore, payload: bytes, text: bool, frames: list[bytes] | None
) -> None:
    # Lock held; the connection is open and not in a fragmented message.
    protocol = core.protocol
    if frames is not None:
        protocol.send_prepared(frames, payload)
    elif text:
        protocol.send_text(payload)
    else:
        protocol.send_binary(payload)
    core._emit()
