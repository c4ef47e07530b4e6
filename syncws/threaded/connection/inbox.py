"""The inbox: received frames waiting for ``recv()``, and pings and pongs for ``next_event()``.

A leaf part of a connection (see ``core.py``): it takes no lock, calls
nothing back and knows nothing of the connection. The core calls it under
its connection lock, from whichever thread read the frames (the thread in
``recv()``, or the background thread) or takes them (the application's
reading thread); the values it needs (``max_queue``, whether we are closing)
are passed in.

What it holds: ``frames`` (``Text``/``Binary`` frames, oldest first; a
message is one or more frames, the last one ``final``; a compressed message's
frames are ``Deflated``, still compressed: the thread that takes it inflates
it, see ``Protocol.defer_inflate``), ``messages`` (how
many whole messages wait), ``controls`` (pings and pongs received, for
``syncws.callbacks`` only: None until ``keep_controls()``), ``busy`` (a
thread is taking messages: one at a time), ``filled`` (``max_queue`` was reached
and reading hasn't resumed since: below it, reading resumes only at the low
water mark), ``arrived`` (messages queued since the connection opened: with
``messages``, it says whether a ping or pong came before or after a message
still waiting) and ``failure_waits`` (a protocol
error waits behind the messages received before it, so errors come in
stream order); ``busy`` stays set while the taking thread inflates a
compressed message outside the lock, so that nobody else takes (and
inflates) the next one before it: messages inflate in wire order. The
core's reader never lets more than ``max_queue`` messages wait (its parser's
budget is ``room()``), nor control frames.

Lists, not deques: an empty deque costs 700 bytes, and a server holds
thousands of idle connections. Both stay short.
"""

from __future__ import annotations

from ...protocol.events import Binary, Deflated, Ping, Pong, Text
from ...protocol.messages import join_frames

__all__ = ["Data", "Inbox", "Queued", "convert", "convert_data", "join"]

Data = str | bytes
#: A frame as it waits: ``Deflated`` for a compressed message, until taken.
Queued = Text | Binary | Deflated


class Inbox:
    """Received messages (and, if asked, pings and pongs) waiting for the application.

    Its methods are called by the connection's core only, by whichever thread
    holds the connection lock.
    """

    __slots__ = (
        "arrived",
        "busy",
        "controls",
        "dropping",
        "failure_waits",
        "filled",
        "frames",
        "inflate_lost",
        "last_final",
        "messages",
    )

    def __init__(self) -> None:
        self.frames: list[Queued] = []
        self.messages = 0
        # Each with the number of messages that had arrived before it (wire order).
        self.controls: list[tuple[int, Ping | Pong]] | None = None
        self.arrived = 0
        self.busy = False
        self.filled = False
        self.failure_waits = False
        # The last frame delivered ended its message (the next one starts a message).
        self.last_final = True
        # The message being received is dropped: it came after our close frame, past max_queue.
        self.dropping = False
        # A compressed message was dropped uninflated: the ones after it may
        # refer to it (context takeover) and can't be inflated, so they are dropped too.
        self.inflate_lost = False

    def room(self, max_queue: int) -> int:
        """How many more messages (or control frames) may be read before reading stops."""
        return max_queue - self.waiting()

    def waiting(self) -> int:
        """Messages and control frames waiting."""
        controls = self.controls
        return self.messages + (len(controls) if controls else 0)

    def has_room(self, high: int, low: int) -> bool:
        """Whether reading may go on: below ``high``, and at ``low`` or below once it filled.

        The water marks of ``max_queue=(high, low)``: reading stops when
        ``high`` messages wait and resumes when no more than ``low`` do.
        """
        waiting = self.waiting()
        if waiting >= high:
            self.filled = True
            return False
        if waiting <= low:
            self.filled = False
        return not self.filled

    def deliver(self, frame: Queued, max_queue: int, closing: bool) -> bool:
        """Queue a received frame; False if its message is dropped.

        After we sent a close frame (``closing``), the reader goes on until
        the peer's close frame, full queue or not; messages that arrive
        meanwhile past ``max_queue`` are dropped: the application asked to
        close, and the queue's bound holds (and once a compressed one was,
        every compressed one after it). Returns False on the final frame of
        a dropped message only (the caller logs it once).
        """
        if self.last_final:  # the first frame of a message
            self.dropping = closing and (
                self.messages >= max_queue or (self.inflate_lost and isinstance(frame, Deflated))
            )
        self.last_final = frame.final
        if self.dropping:
            if isinstance(frame, Deflated):
                self.inflate_lost = True
            return not frame.final
        self.frames.append(frame)
        if frame.final:
            self.messages += 1
            self.arrived += 1
        return True

    def keep_controls(self) -> None:
        """From now on, queue pings and pongs received for ``take_control()``."""
        if self.controls is None:
            self.controls = []

    def deliver_control(self, event: Ping | Pong, max_queue: int) -> bool:
        """Queue a ping or a pong if asked to; False if dropped (``max_queue`` wait).

        Control frames are parsed even while data waits (a flood may come in
        one read): past ``max_queue`` waiting, their reports are dropped.
        """
        controls = self.controls
        if controls is None:
            return True
        if len(controls) >= max_queue:
            return False
        controls.append((self.arrived, event))
        return True

    def take_control(self) -> Ping | Pong | None:
        """The oldest ping or pong waiting, unless a message that came before it waits.

        Wire order: a ping received after a message is reported after it; one
        received in the middle of a fragmented message, before it.
        """
        controls = self.controls
        if not controls or controls[0][0] > self.arrived - self.messages:
            return None
        return controls.pop(0)[1]

    def drop(self) -> None:
        """Forget every message waiting: the connection failed."""
        self.frames.clear()
        self.messages = 0
        self.failure_waits = False

    def take_message(self) -> list[Queued] | None:
        """The frames of the oldest whole message, or None if no whole message waits."""
        if not self.messages:
            return None
        queued = self.frames
        end = 1
        while not queued[end - 1].final:
            end += 1
        frames = queued[:end]
        del queued[:end]
        self.messages -= 1
        return frames

    def take_frame(self) -> Queued | None:
        """The oldest frame, or None if none waits."""
        if not self.frames:
            return None
        frame = self.frames.pop(0)
        if frame.final:
            self.messages -= 1
        return frame


def convert(frame: Text | Binary, decode: bool | None) -> Data:
    """One frame's data: ``decode=False`` encodes text, ``decode=True`` decodes binary."""
    if isinstance(frame, Text):
        return frame.data.encode() if decode is False else frame.data
    return frame.data.decode() if decode else frame.data


def join(frames: list[Text | Binary], decode: bool | None) -> Data:
    """A whole message from its frames, converted as ``convert`` does."""
    return convert_data(join_frames(frames), decode)


def convert_data(data: Data, decode: bool | None) -> Data:
    """A whole message's data, converted as ``convert`` does."""
    if isinstance(data, str):
        return data.encode() if decode is False else data
    return data.decode() if decode else data
