"""The inbox: received frames waiting for ``recv()``, at most ``max_queue`` messages.

What it guards: ``_frames`` (``Text``/``Binary`` frames, oldest first; a
message is one or more frames, the last one ``final``), ``_messages`` (how
many whole messages wait), ``_controls`` (pings and pongs received, for
``syncws.callbacks`` only: None unless ``queue_control_frames()`` was
called), ``_recv_busy`` (one reader at a time) and ``_failure_waits`` (a
protocol error waits behind the messages received before it, so errors come
in stream order). All under ``_lock``. Messages never exceed ``max_queue``
(the reader's budget sees to it), nor do control frames waiting to be
reported; those count towards the next read's budget.

Frames are appended by whichever thread reads the socket (reader.py: the
thread in ``recv()``, or the reactor); while ``max_queue`` messages wait,
nobody reads and TCP pushes back on the peer. ``recv()`` takes a message and
joins its frames with ``syncws.protocol.messages.join_frames``.

Lists, not deques: an empty deque costs 700 bytes, and a server holds
thousands of idle connections. Both stay short.

Threads: the application's reading thread (``recv()``, ``recv_streaming()``);
nothing here runs on the reactor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..exceptions import ConcurrencyError
from ..protocol.connection import State
from ..protocol.events import Binary, Ping, Pong, Text
from ..protocol.messages import join_frames
from .deadline import Deadline
from .driver import Data, Driver

__all__ = ["Inbox", "convert", "join"]


class Inbox(Driver):
    """Received messages, waiting for the application."""

    __slots__ = (
        "_arrived",
        "_controls",
        "_dropping",
        "_failure_waits",
        "_frames",
        "_last_final",
        "_messages",
        "_queue_low",
        "_recv_busy",
        "max_queue",
    )

    # All under _lock.
    _frames: list[Text | Binary]
    _messages: int
    # Pings and pongs to report, each with the number of messages that arrived before it.
    _controls: list[tuple[int, Ping | Pong]] | None
    # Messages queued since the connection opened: with _messages, says which came first.
    _arrived: int
    _recv_busy: bool
    _failure_waits: bool
    max_queue: int
    # Reading resumes once no more than this many messages wait (max_queue's low mark).
    _queue_low: int
    # The last frame delivered ended its message (the next one starts a message).
    _last_final: bool
    # The message being received is dropped: it came after our close frame, past max_queue.
    _dropping: bool

    if TYPE_CHECKING:
        # Defined by reader.py, the part above this one.
        def _read_until(self, ready: Callable[[], bool], deadline: Deadline) -> None: ...
        def _resume_watch(self, later: bool = False) -> None: ...

    def _setup_inbox(self, max_queue: int | tuple[int, int]) -> None:
        if isinstance(max_queue, tuple):
            self.max_queue, self._queue_low = max_queue
        else:
            self.max_queue, self._queue_low = max_queue, max_queue - 1
        self._frames = []
        self._messages = 0
        self._controls = None
        self._arrived = 0
        self._recv_busy = False
        self._failure_waits = False
        self._last_final = True
        self._dropping = False

    def _deliver(self, frame: Text | Binary) -> None:
        """Queue a received frame for the application (lock held; reader.py).

        After we sent a close frame, the reader goes on until the peer's close
        frame, full queue or not; messages that arrive meanwhile past
        ``max_queue`` are dropped (logged at DEBUG): the application asked to
        close, and the queue's bound holds.
        """
        if self._last_final:  # the first frame of a message
            self._dropping = (
                self._messages >= self.max_queue and self.protocol.state is State.CLOSING
            )
        self._last_final = frame.final
        if self._dropping:
            if frame.final:
                self.logger.debug(
                    "dropped a message received after our close frame, past max_queue"
                )
            return
        self._frames.append(frame)
        if frame.final:
            self._messages += 1
            self._arrived += 1

    def _deliver_control(self, event: Ping | Pong) -> None:
        """Queue a ping or a pong for ``next_event()``, if asked to (lock held; reader.py).

        Control frames are parsed even while data waits (they may come in a
        flood within one read): past ``max_queue`` waiting, their reports are
        dropped (logged at DEBUG). The pings were answered all the same.
        """
        if self._controls is None:
            return
        if len(self._controls) >= self.max_queue:
            self.logger.debug("too many pings and pongs waiting to be reported: dropped one")
            return
        self._controls.append((self._arrived, event))

    def _queued_controls(self) -> int:
        return 0 if self._controls is None else len(self._controls)

    def next_event(self, timeout: float | None = None) -> Data | Ping | Pong:
        """The next message, or ping or pong received (for ``syncws.callbacks``).

        Like ``recv()``; pings, pongs and messages come in the order they
        arrived (a ping received in the middle of a fragmented message comes
        before it). One thread at a time (the ``recv()`` rule).
        """
        deadline = Deadline(timeout)
        self._start_reading()
        try:
            with self._lock:
                if not self._controls and not self._messages:
                    self._read_until(lambda: self._messages > 0 or bool(self._controls), deadline)
                # Messages taken so far: a control that arrived after more waits for them.
                taken = self._arrived - self._messages
                if self._controls and self._controls[0][0] <= taken:
                    _, event = self._controls.pop(0)
                    self._resume_watch(later=True)
                    return event
            frames = self._take_message(deadline)
        finally:
            self._stop_reading()
        return join(frames, None)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        self._start_reading()
        try:
            yield
        finally:
            self._stop_reading()

    def _start_reading(self) -> None:
        with self._lock:
            if self._recv_busy:
                raise ConcurrencyError(
                    "another thread is already in recv() or recv_streaming() on this connection"
                )
            self._recv_busy = True

    def _stop_reading(self) -> None:
        with self._lock:
            self._recv_busy = False

    def _take_message(self, deadline: Deadline) -> list[Text | Binary]:
        with self._lock:
            if not self._messages:
                self._read_until(lambda: self._messages > 0, deadline)
            queued = self._frames
            end = 1
            while not queued[end - 1].final:
                end += 1
            frames = queued[:end]
            del queued[:end]
            self._messages -= 1
            self._resume_watch(later=True)
            return frames

    def _take_frame(self, deadline: Deadline) -> Text | Binary:
        with self._lock:
            if not self._frames:
                self._read_until(lambda: bool(self._frames), deadline)
            frame = self._frames.pop(0)
            if frame.final:
                self._messages -= 1
                self._resume_watch(later=True)
            return frame


def convert(frame: Text | Binary, decode: bool | None) -> Data:
    """One frame's data: ``decode=False`` encodes text, ``decode=True`` decodes binary."""
    if isinstance(frame, Text):
        return frame.data.encode() if decode is False else frame.data
    return frame.data.decode() if decode else frame.data


def join(frames: list[Text | Binary], decode: bool | None) -> Data:
    """A whole message from its frames, converted as ``convert`` does."""
    data = join_frames(frames)
    if isinstance(data, str):
        return data.encode() if decode is False else data
    return data.decode() if decode else data
