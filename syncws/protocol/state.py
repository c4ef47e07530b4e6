"""What one connection of the protocol core knows, and the three primitives every part uses.

``Side`` and ``State`` name the connection's end and its RFC 6455 state.
``ProtocolState`` declares every field of a connection in one place (one
``__slots__``, one ``__init__``): its state and limits, the receive buffer, the
queues of events and bytes, the message being received and the one being
sent, and the close frames. The parts of ``Protocol`` build on it in a line,
each adding methods only, so a connection keeps one compact memory layout:
``ProtocolSender`` (sending.py) sends frames and closes, ``ProtocolReceiver``
(receiving.py) parses frames, and ``Protocol`` (connection.py) is what an I/O
layer calls. No I/O and no threads here: the I/O layer serializes the calls.
"""

from __future__ import annotations

import codecs
import enum
from collections.abc import Sequence

from ..exceptions import InvalidHandshake, ProtocolError
from .events import Close, Event
from .extensions import Extension
from .masking import MaskSource

__all__ = [
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_SIZE",
    "Event",
    "ProtocolState",
    "Side",
    "State",
]

#: Default limit on the size of a received message: 1 MiB.
DEFAULT_MAX_SIZE = 2**20
#: Default number of frames a message may arrive in before its size counts.
DEFAULT_MAX_FRAGMENTS = 1024


class Side(enum.Enum):
    """Which end of the connection this protocol object plays."""

    CLIENT = "client"
    SERVER = "server"


class State(enum.IntEnum):
    """Connection state, as in RFC 6455 section 4 and 7.

    CONNECTING until the opening handshake completes; OPEN while messages
    flow; CLOSING once a close frame was sent or received; CLOSED once the TCP
    connection is gone (``receive_eof`` was called) or the handshake failed.
    """

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class ProtocolState:
    """The fields of one connection, shared by the sending and the receiving part.

    ``Protocol`` describes the constructor's arguments.
    """

    # Slots keep a connection's memory small (a server holds thousands);
    # ``__dict__`` still lets subclasses and tests add attributes. The classes
    # built on this one declare ``__slots__ = ()``: they add methods, not fields.
    __slots__ = (
        "__dict__",
        "_assembled",
        "_assembly",
        "_budget_messages",
        "_budget_size",
        "_buffer",
        "_close_transport",
        "_discarding",
        "_eof_received",
        "_events",
        "_header",
        "_in_compressed",
        "_in_decoder",
        "_in_frames",
        "_in_opcode",
        "_in_size",
        "_inflate_decoder",
        "_inflated_size",
        "_masks",
        "_out_opcode",
        "_output",
        "_partial_checked",
        "_partial_text",
        "_pending_failure",
        "_pong_owed",
        "answer_pings",
        "close_received",
        "close_sent",
        "close_sent_first",
        "defer_failures",
        "defer_inflate",
        "extension_factories",
        "extensions",
        "handshake_exc",
        "limits",
        "max_fragments",
        "max_frame_size",
        "max_size",
        "protocol_error",
        "request",
        "response",
        "side",
        "state",
        "subprotocol",
    )

    def __init__(
        self,
        side: Side,
        *,
        state: State = State.OPEN,
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
        extensions: Sequence[Extension] = (),
        subprotocol: str | None = None,
    ) -> None:
        self.side = side
        self.state = state
        self.max_size = max_size
        self.max_fragments = max_fragments
        #: The largest data frame accepted, in bytes as sent (None: only ``max_size``).
        self.max_frame_size: int | None = None
        self.extensions: list[Extension] = list(extensions)
        self.subprotocol = subprotocol

        #: The exception that made the opening handshake fail, if it did.
        self.handshake_exc: InvalidHandshake | None = None
        #: The peer's protocol violation that made us fail the connection, if any.
        self.protocol_error: ProtocolError | None = None
        #: The close frames received and sent, once they were.
        self.close_received: Close | None = None
        self.close_sent: Close | None = None
        #: True if we sent our close frame before the peer sent its own.
        self.close_sent_first: bool | None = None
        #: Answer each ping with a pong at once (RFC 6455 5.5.2). An I/O layer
        #: turns it off while the peer doesn't read what it is sent: the pings
        #: that arrive meanwhile are answered later, with one pong for the
        #: latest (5.5.3 allows it), by ``send_owed_pong()``. A ping flood then
        #: can't pile up pongs in memory. The ``Ping`` event comes out either way.
        self.answer_pings = True
        self._pong_owed: bytes | None = None
        # What the parser may still produce before it pauses (set_receive_budget).
        self._budget_messages: int | None = None
        self._budget_size: int | None = None

        self._buffer = bytearray()
        self._events: list[Event] = []
        self._output: list[bytes] = []
        self._eof_received = False
        self._discarding = False
        self._close_transport = False
        self._masks = MaskSource() if side is Side.CLIENT else None

        # The frame header being read, kept while its payload arrives:
        # (opcode, fin, rsv1, payload length, mask, header length).
        self._header: tuple[int, bool, bool, int, bytes | None, int] | None = None
        # The message being received: its opcode, size, frame count, decoder.
        self._in_opcode: int | None = None
        self._in_size = 0
        self._in_frames = 0
        self._in_decoder: codecs.IncrementalDecoder | None = None
        self._in_compressed = False
        # The fragmented message being sent, if any.
        self._out_opcode: int | None = None
        # A big data frame's payload, gathered apart from _buffer while it
        # arrives (see ProtocolReceiver._assemble): the storage, kept while
        # frames stream in, and the bytes of the current frame in it (None:
        # no frame is being gathered).
        self._assembly: bytearray | None = None
        self._assembled: int | None = None
        # Text of the frame being received, decoded while its payload arrives.
        self._partial_checked = 0
        self._partial_text: list[str] = []

        #: When True, a protocol error waits in ``failure_pending`` until
        #: ``fail_pending()``, so that an I/O layer lets the application handle
        #: the messages received before the error first (errors in stream order).
        self.defer_failures = False
        self._pending_failure: ProtocolError | None = None

        #: When True, compressed messages come out as ``Deflated`` pieces for
        #: ``inflate()`` (see ``ProtocolReceiver``). The message ``inflate()``
        #: is working on: its size so far and its UTF-8 decoder, apart from
        #: the parser's (another thread may inflate while one parses).
        self.defer_inflate = False
        self._inflated_size = 0
        self._inflate_decoder: codecs.IncrementalDecoder | None = None

    def _write(self, data: bytes) -> None:
        """Queue bytes for the network."""
        self._output.append(data)

    def _emit(self, event: Event) -> None:
        """Queue an event for the application."""
        self._events.append(event)

    def _stop_reading(self, *, close_transport: bool) -> None:
        """Discard what is buffered and all input from now on; maybe ask for TCP to close."""
        self._discarding = True
        self._buffer.clear()
        self._assembly = self._assembled = None
        if close_transport:
            self._close_transport = True
