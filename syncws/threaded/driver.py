"""The one way to make the protocol send: check state, call the core, queue its output, write.

What it guards: the sending side of the ``Protocol`` object. Every byte the
core produces enters the outbox through ``_emit()`` (lock held), which
counts it in ``buffered_amount``; ``_drive(action)`` wraps the usual steps
for callers outside the lock: take ``_lock``, check the connection is open,
call the core, ``_emit()``, then write (``_flush``). ``send``, ``ping``,
``pong``, ``close``, keepalive, broadcasts, both opening handshakes, WSGI
and ``syncws.testing`` all send through here. It also holds the broadcast
backpressure (``write_limit``, messages deferred during a fragmented send).

Locks. ``_send_mutex`` serializes application senders so their messages
never interleave; it is the outermost lock: ``_send_mutex`` ->
``_write_lock`` -> ``_lock``. ``_deferred``, ``_deferred_bytes``,
``_skipping`` and ``skipped_messages`` are under ``_lock``.

Entry points for other modules: ``offer_broadcast`` (broadcast.py),
``write_raw`` (syncws.testing), ``start_closing`` (wsgi; server.py uses its
older name ``_start_closing``). Reactor thread: nothing here is a reactor
callback, but the reactor sends through ``_drive`` (keepalive) and ``_emit``
(pong replies and close frames, from reader.py).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..exceptions import InvalidState
from ..protocol.close_codes import CloseCode
from ..protocol.connection import State
from ..protocol.http11 import Request, Response
from .deadline import Deadline
from .logs import ConnectionLogger, frames_logger, logging_frames
from .outbox import Outbox

__all__ = ["DEFAULT_WRITE_LIMIT", "Data", "Driver"]

Data = str | bytes
BytesLike = (bytes, bytearray, memoryview)
_T = TypeVar("_T")

#: Default ``write_limit``: past this backlog, broadcasts skip a connection.
DEFAULT_WRITE_LIMIT = 1024 * 1024


class Driver(Outbox):
    """Drive the protocol's sending side; the only way bytes reach the outbox."""

    __slots__ = (
        "_deferred",
        "_deferred_bytes",
        "_send_mutex",
        "_skipping",
        "skipped_messages",
        "write_limit",
    )

    # Serializes application senders (send()); the outermost lock.
    _send_mutex: threading.Lock
    # Under _lock: broadcast messages that arrived during a fragmented send, and their size.
    _deferred: list[tuple[bytes, bool, list[bytes] | None]]
    _deferred_bytes: int
    # Under _lock: broadcasts are being skipped (logged once per episode).
    _skipping: bool
    skipped_messages: int
    write_limit: int

    if TYPE_CHECKING:
        # Defined by reader.py, the part above this one.
        _handshake_event: Request | Response | None

        def _process_events(self) -> None: ...

    def _setup_driver(self, write_limit: int) -> None:
        self._send_mutex = threading.Lock()
        self._deferred = []
        self._deferred_bytes = 0
        self._skipping = False
        #: Past this many bytes waiting to be written, ``broadcast()`` skips
        #: this connection (see ``skipped_messages``).
        self.write_limit = write_limit
        #: Broadcast messages skipped because the peer didn't keep up.
        self.skipped_messages = 0

    # -- the choke point ---------------------------------------------------------------

    def _emit(self) -> bool:
        """Queue what the core produced, counting it (lock held); True if there was any."""
        output = self.protocol.data_to_send()
        if not output:
            return False
        self._queue(output)
        return True

    def _drive(
        self,
        action: Callable[[], _T],
        *,
        check_open: bool = True,
        write: bool = True,
        deadline: Deadline | None = None,
    ) -> _T:
        """Run ``action`` on the core under ``_lock``, queue its output, then write it.

        ``check_open``: raise ``InvalidState`` before the handshake and
        ``ConnectionClosed`` once closing, as ``send()`` does. ``write``:
        write the outbox after releasing ``_lock``, waiting until ``deadline``
        (never waiting without one); False leaves that to the caller.
        """
        with self._lock:
            if check_open:
                self._check_open()
            result = action()
            self._emit()
        if write:
            self._flush(deadline)
        return result

    def _check_open(self) -> None:
        # Called with the lock held.
        if self.protocol.state is State.OPEN:
            return
        if self.protocol.state is State.CONNECTING:
            raise InvalidState("the opening handshake has not completed")
        # Closing or closed: raise at once, with the close frames known so far.
        raise self._closed_exception()

    def _answer_owed_ping(self) -> None:
        """Writer: pings waited while the backlog was over ``write_limit``; answer the latest.

        Called by the writer as the backlog goes down (write lock held, not ``_lock``).
        """
        if self._backlog() > self.write_limit:
            return
        with self._lock:
            if self.protocol.pong_owed:
                self.protocol.send_owed_pong()
                self._emit()

    # -- application messages ----------------------------------------------------------

    def _take_send_mutex(self, deadline: Deadline) -> None:
        """Acquire ``_send_mutex``, waiting until ``deadline``; the caller releases it."""
        if not self._send_mutex.acquire(blocking=False):
            remaining = deadline.remaining()
            if not self._send_mutex.acquire(timeout=-1 if remaining is None else remaining):
                raise deadline.timeout_error("waiting for another thread's send")

    @contextlib.contextmanager
    def _acquire_send_mutex(self, deadline: Deadline) -> Iterator[None]:
        self._take_send_mutex(deadline)
        try:
            yield
        finally:
            self._send_mutex.release()

    def _send_fragments(self, pieces: Iterator[Any], text: bool | None, deadline: Deadline) -> None:
        # Send mutex held. ``deadline`` bounds the whole message: past it, the
        # message is half sent and can't be taken back, so the connection fails.
        try:
            first = next(pieces)
        except StopIteration:
            return
        if not isinstance(first, (str, *BytesLike)):
            raise TypeError(f"send() iterables yield str or bytes, not {type(first).__name__}")
        kind = str if isinstance(first, str) else bytes
        self._send_frame(first, text, first=True, fin=False)
        try:
            for piece in pieces:
                if not isinstance(piece, kind if kind is str else BytesLike):
                    raise TypeError("send() iterables must yield all str or all bytes")
                self._send_frame(piece, text, first=False, fin=False)
                # Write as we go: the iterable may be long, or slow to produce.
                self._flush(deadline)
            self._send_frame(b"", text, first=False, fin=True)
        except BaseException:
            # The message can't be completed or taken back: fail the connection.
            if not self._is_closed():
                self._fail(CloseCode.INTERNAL_ERROR, "error while sending a fragmented message")
            raise

    def _send_frame(
        self, data: Data | bytearray | memoryview, text: bool | None, *, first: bool, fin: bool
    ) -> None:
        # Send mutex held; the caller writes.
        self._drive(functools.partial(self._frame_to_core, data, text, first, fin), write=False)

    def _frame_to_core(
        self, data: Data | bytearray | memoryview, text: bool | None, first: bool, fin: bool
    ) -> None:
        # Lock held, connection open.
        protocol = self.protocol
        if not first:
            protocol.send_continuation(data, fin=fin)
        elif text if text is not None else isinstance(data, str):
            protocol.send_text(data if isinstance(data, (str, bytes)) else bytes(data), fin=fin)
        else:
            protocol.send_binary(data.encode() if isinstance(data, str) else data, fin=fin)
        if logging_frames():
            ConnectionLogger(frames_logger, self.logger.extra).debug(
                "> data frame of %d bytes, fin=%s", len(data), fin
            )
        if fin and self._deferred:
            self._emit()  # the frame first, then the broadcasts held back behind it
            self._send_deferred()

    # -- closing -----------------------------------------------------------------------

    def _begin_close(self, code: int, reason: str) -> None:
        # Lock held: the first step of close().
        if self.protocol.state is State.OPEN:
            if self.protocol.sending_fragments:
                self.protocol.fail(CloseCode.INTERNAL_ERROR, "close() during a fragmented send")
            else:
                self.protocol.send_close(code, reason)
            self.logger.debug("sent close frame: %s %r", code, reason)
            self._process_events()
        elif self.protocol.state is State.CONNECTING:
            self._close_socket()

    def start_closing(self, code: int, reason: str) -> None:
        """Send a close frame without waiting for the answer (any thread).

        For server and WSGI shutdown (``Server.shutdown()``, ``syncws.wsgi.shutdown_all()``).
        """

        def begin() -> None:
            if self.protocol.state is State.OPEN:
                self.protocol.send_close(code, reason)
                self._process_events()
            elif self.protocol.state is State.CONNECTING and self._handshake_event is None:
                self._close_socket()  # nothing received yet: drop it

        self._drive(begin, check_open=False)

    _start_closing = start_closing

    def _abort(self) -> None:
        """Close the TCP connection now, without a closing handshake (any thread)."""
        with self._lock:
            self._close_socket()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: send a close frame if possible and close TCP at once."""

        def fail() -> None:
            self.protocol.fail(code, reason)
            self._process_events()

        self._drive(fail, check_open=False)
        with self._lock:
            self._close_socket()

    # -- broadcasts --------------------------------------------------------------------

    def offer_broadcast(
        self,
        payload: bytes,
        text: bool,
        prepared: dict[Hashable, list[bytes]],
        overflow: int | None,
    ) -> bool | None:
        """Queue a broadcast message without ever blocking (for ``broadcast()``; any thread).

        Return True when queued, False when the backlog was full, None when
        the connection is closing or closed. ``prepared`` caches encoded
        messages by ``sharing_key()`` across the connections of one broadcast.
        ``overflow`` is the close code for a full backlog, or None to skip.
        The reactor writes the message: broadcasts queued meanwhile go out in
        the same syscall, and the caller never spends a syscall per connection.

        Raises:
            InvalidState: the opening handshake has not completed.
        """
        return self._drive(
            functools.partial(self._offer_locked, payload, text, prepared, overflow),
            check_open=False,
            write=False,
        )

    def _offer_locked(
        self,
        payload: bytes,
        text: bool,
        prepared: dict[Hashable, list[bytes]],
        overflow: int | None,
    ) -> bool | None:
        protocol = self.protocol
        if protocol.state is not State.OPEN:
            if protocol.state is State.CONNECTING:
                raise InvalidState("the opening handshake has not completed")
            return None
        backlog = self._backlog() + self._deferred_bytes
        if backlog > self.write_limit:
            self._report_skip(backlog, overflow)  # may queue a close frame
            accepted = False
        else:
            if self._skipping:
                self._skipping = False
                self.logger.info(
                    "broadcast: delivering again (%d skipped so far)", self.skipped_messages
                )
            key = protocol.sharing_key()
            frames = None
            if key is not None:
                frames = prepared.get(key)
                if frames is None:
                    frames = prepared[key] = protocol.prepare_message(payload, text=text)
            if protocol.sending_fragments:
                # Never inside another message: after its final frame.
                self._deferred.append((payload, text, frames))
                self._deferred_bytes += len(payload)
                return True
            self._queue_message(payload, text, frames)
            accepted = True
        self._write_soon()
        return accepted

    def _report_skip(self, backlog: int, overflow: int | None) -> None:
        # Lock held: the peer is too slow for broadcasts.
        self.skipped_messages += 1
        if overflow is not None:
            self.logger.warning(
                "broadcast: %d bytes waiting, past write_limit: closing with %d",
                backlog,
                overflow,
            )
            self.protocol.send_close(overflow, "too slow to keep up")
            self._process_events()
        elif not self._skipping:
            self._skipping = True
            self.logger.warning(
                "broadcast: %d bytes waiting, past write_limit: skipping messages", backlog
            )

    def _queue_message(self, payload: bytes, text: bool, frames: list[bytes] | None) -> None:
        # Lock held; the connection is open and not in a fragmented message.
        protocol = self.protocol
        if frames is not None:
            protocol.send_prepared(frames)
        elif text:
            protocol.send_text(payload)
        else:
            protocol.send_binary(payload)
        self._emit()

    def _send_deferred(self) -> None:
        # Lock held: a fragmented message ended, broadcasts held back follow it.
        deferred, self._deferred = self._deferred, []
        self._deferred_bytes = 0
        for payload, text, frames in deferred:
            self._queue_message(payload, text, frames)

    def _drop_on_close(self) -> None:
        super()._drop_on_close()
        self._deferred.clear()
        self._deferred_bytes = 0

    # -- syncws.testing ----------------------------------------------------------------

    def write_raw(self, data: bytes, timeout: float | None) -> None:
        """Write ``data`` as it is, bypassing the protocol (for ``syncws.testing``; any thread).

        Raises:
            TimeoutError: not written within ``timeout`` seconds.
            ConnectionClosed: the connection was lost.
        """
        self._drive(
            lambda: self._queue([bytes(data)]), check_open=False, deadline=Deadline(timeout)
        )
