"""The WebSocket protocol state machine for one connection, without I/O.

An I/O layer feeds it what it reads (``receive_data``, ``receive_eof``), asks
it to send (``send_text``, ``send_close``, ...), and then collects what came
out: ``events_received()`` for the application and ``data_to_send()`` for the
socket. ``should_close_transport`` tells when the TCP connection should go.

``ClientProtocol`` and ``ServerProtocol`` add the opening handshake; this
class alone, built in the OPEN state, speaks frames only.
"""

from __future__ import annotations

import codecs
import enum
from collections.abc import Hashable, Sequence
from typing import Any, TypeAlias

from ..exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidPayload,
    InvalidState,
    PayloadTooBig,
    ProtocolError,
    TooManyFragments,
)
from .close_codes import CloseCode
from .events import Binary, Close, Ping, Pong, Text
from .extensions import Extension
from .frames import Frame, Opcode
from .framing import (
    MAX_CONTROL_PAYLOAD,
    encode_close_payload,
    encode_frame,
    parse_close_payload,
    truncate_reason,
)
from .masking import MaskSource, apply_mask

__all__ = ["DEFAULT_MAX_SIZE", "Event", "Protocol", "Side", "State"]

#: Default limit on the size of a received message: 1 MiB.
DEFAULT_MAX_SIZE = 2**20
#: Default number of frames a message may arrive in before its size counts.
DEFAULT_MAX_FRAGMENTS = 1024
#: Beyond ``max_fragments``, a message earns one more frame per this many bytes.
BYTES_PER_EXTRA_FRAGMENT = 16

#: What ``events_received()`` returns: ``Text``, ``Binary``, ``Ping``, ``Pong``,
#: ``Close``, and the handshake's ``Request`` (server) or ``Response`` (client).
Event: TypeAlias = Any

_NORMAL_CODES = frozenset(
    {CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD}
)
_VALID_OPCODES = frozenset(int(opcode) for opcode in Opcode)
# Plain ints for the per-frame path: reading Opcode.TEXT costs ~0.2 us a time.
_CONTINUATION = int(Opcode.CONTINUATION)
_TEXT = int(Opcode.TEXT)
# Opcode(value) costs a microsecond (an enum lookup); this dict, a tenth of it.
_OPCODES = {int(opcode): opcode for opcode in Opcode}
_CONTROL_BIT = 0x08


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


class Protocol:
    """Frames, messages and the closing handshake for one connection.

    Not thread-safe: the I/O layer serializes calls (one lock, or one thread).
    None of its methods block.

    ``max_size`` bounds a received message in bytes after decompression
    (``None``: no bound); a larger one fails the connection with 1009 before it
    is buffered. ``max_fragments`` bounds the frames of one message: up to that
    many, plus one for every 16 bytes of payload, so a large message cut into
    sensible pieces passes while a flood of tiny or empty frames fails with
    1009 (``None``: no bound).
    """

    # Slots keep a connection's memory small (a server holds thousands);
    # ``__dict__`` still lets subclasses and tests add attributes.
    __slots__ = (
        "__dict__",
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
        "extension_factories",
        "extensions",
        "handshake_exc",
        "limits",
        "max_fragments",
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
        # Text of the frame being received, decoded while its payload arrives.
        self._partial_checked = 0
        self._partial_text: list[str] = []

        #: When True, a protocol error waits in ``failure_pending`` until
        #: ``fail_pending()``, so that an I/O layer lets the application handle
        #: the messages received before the error first (errors in stream order).
        self.defer_failures = False
        self._pending_failure: ProtocolError | None = None

    # -- feeding the protocol --------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Take bytes read from the network and turn them into events.

        Never raises for what the peer sent: a protocol violation fails the
        connection (see ``protocol_error``), a failed handshake sets
        ``handshake_exc``.
        """
        if self._discarding:
            return
        self._buffer += data
        if self.state is State.CONNECTING:
            self._receive_handshake()
            if self.state is State.CONNECTING or self._discarding:
                return
        self._parse_frames()

    def receive_eof(self) -> None:
        """Record that the TCP connection ended: the peer closed it, or we did."""
        if self._eof_received:
            return
        self._eof_received = True
        if self._pending_failure is not None:
            self.protocol_error, self._pending_failure = self._pending_failure, None
        if self.state is State.CONNECTING:
            self._receive_handshake_eof()
        self.state = State.CLOSED
        self._stop_reading(close_transport=True)

    def set_receive_budget(self, messages: int | None = None, size: int | None = None) -> None:
        """Bound what the parser produces before it pauses: whole messages, payload bytes.

        The parser pauses before the next data frame once it produced
        ``messages`` more final data frames or ``size`` more bytes of data
        frame payload, counted after decompression (``None``: no bound). Bytes
        received meanwhile stay buffered; control frames ahead of that data
        frame are still parsed. Set a new budget and call ``receive_data(b"")``
        to go on. An I/O layer uses it to bound the work done per read, and
        stops reading while ``receive_paused``.
        """
        self._budget_messages = messages
        self._budget_size = size

    @property
    def receive_paused(self) -> bool:
        """True once the budget of ``set_receive_budget`` is spent."""
        return (self._budget_messages is not None and self._budget_messages <= 0) or (
            self._budget_size is not None and self._budget_size <= 0
        )

    # -- collecting results ----------------------------------------------------

    def events_received(self) -> list[Event]:
        """Return the events produced since the last call, oldest first."""
        events = self._events
        self._events = []
        return events

    def data_to_send(self) -> list[bytes]:
        """Return the bytes to write since the last call, in order (maybe empty)."""
        output = self._output
        self._output = []
        return output

    @property
    def should_close_transport(self) -> bool:
        """True once the TCP connection should be closed by us now.

        That is after a failed handshake, after we failed the connection, once
        EOF was received, or on a server once the closing handshake completed
        (RFC 6455 7.1.1). A client whose closing handshake completed waits for
        the server to close TCP first; its I/O layer closes after a timeout.
        """
        if self._close_transport:
            return True
        return (
            self.side is Side.SERVER
            and self.close_sent is not None
            and self.close_received is not None
        )

    @property
    def failure_pending(self) -> bool:
        """True while a protocol error waits for ``fail_pending()`` (see ``defer_failures``)."""
        return self._pending_failure is not None

    def fail_pending(self) -> None:
        """Act on a deferred protocol error now: queue the close frame and stop."""
        exc = self._pending_failure
        if exc is not None:
            self._pending_failure = None
            self.protocol_error = exc
            self.fail(exc.close_code, str(exc))

    @property
    def receiving(self) -> bool:
        """False once no more events can come: close received, connection failed, or EOF."""
        return not self._discarding

    @property
    def close_code(self) -> int | None:
        """The connection close code (RFC 6455 7.1.5), or None while not closed.

        The code of the received close frame (1005 if it had none); 1006 when
        the TCP connection ended without one.
        """
        if self.close_received is not None:
            return self.close_received.code
        if self.state is State.CLOSED:
            return CloseCode.ABNORMAL_CLOSURE
        return None

    @property
    def close_reason(self) -> str:
        """The reason in the received close frame, or ``""``."""
        return self.close_received.reason if self.close_received is not None else ""

    def close_exc(self) -> ConnectionClosed:
        """Build the ``ConnectionClosed`` exception that describes how the connection ended.

        ``ConnectionClosedOK`` when the peer's close frame and ours (where
        sent) both had 1000, 1001 or no code; ``ConnectionClosedError``
        otherwise, including when no close frame arrived.
        """
        received, sent = self.close_received, self.close_sent
        exc_type: type[ConnectionClosed] = ConnectionClosedError
        if (
            received is not None
            and received.code in _NORMAL_CODES
            and (sent is None or sent.code in _NORMAL_CODES)
        ):
            exc_type = ConnectionClosedOK
        exc = exc_type(
            received.code if received is not None else None,
            received.reason if received is not None else "",
            sent.code if sent is not None else None,
            sent.reason if sent is not None else "",
            we_closed_first=self.close_sent_first,
        )
        if self.protocol_error is not None:
            exc.__cause__ = self.protocol_error
        return exc

    # -- sending ----------------------------------------------------------------

    def send_text(self, data: str | bytes, *, fin: bool = True) -> None:
        """Send a text message, or its first frame when ``fin`` is False.

        ``bytes`` are sent as they are and must already be UTF-8.
        """
        payload = data.encode() if isinstance(data, str) else data
        self._send_data(Opcode.TEXT, payload, fin)

    def send_binary(self, data: bytes | bytearray | memoryview, *, fin: bool = True) -> None:
        """Send a binary message, or its first frame when ``fin`` is False."""
        self._send_data(Opcode.BINARY, bytes(data), fin)

    def send_continuation(self, data: str | bytes | bytearray | memoryview, *, fin: bool) -> None:
        """Send the next frame of the fragmented message in progress."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        self._send_data(Opcode.CONTINUATION, payload, fin)

    @property
    def sending_fragments(self) -> bool:
        """True between the first and the final frame of a fragmented message we send."""
        return self._out_opcode is not None

    def sharing_key(self) -> Hashable | None:
        """Equal for connections on which a whole message encodes to equal bytes.

        ``None`` when it can't be shared: a client masks every frame with its
        own random key, and compression with context takeover depends on the
        connection's history. See ``prepare_message`` and ``send_prepared``.
        """
        if self.side is Side.CLIENT:
            return None
        keys = []
        for extension in self.extensions:
            key = extension.sharing_key()
            if key is None:
                return None
            keys.append(key)
        return tuple(keys)

    def prepare_message(self, data: str | bytes, *, text: bool) -> list[bytes]:
        """Encode a whole message for ``send_prepared``, on this connection or any other
        with the same ``sharing_key()``, without changing state (broadcast)."""
        if self.sharing_key() is None:
            raise InvalidState("messages on this connection can't be encoded in advance")
        payload = data.encode() if isinstance(data, str) else bytes(data)
        frame = Frame(Opcode.TEXT if text else Opcode.BINARY, payload)
        for extension in self.extensions:
            frame = extension.encode_standalone(frame)
        return encode_frame(frame.opcode, frame.payload, rsv1=frame.rsv1)

    def send_prepared(self, frames: list[bytes]) -> None:
        """Send a message encoded by ``prepare_message``."""
        self._check_can_send()
        if self._out_opcode is not None:
            raise InvalidState("a fragmented message is being sent: finish it first")
        self._output += frames

    def send_ping(self, data: bytes = b"") -> None:
        """Send a ping with up to 125 bytes of application data."""
        self._send_control(Opcode.PING, data)

    def send_pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong with up to 125 bytes of application data."""
        self._send_control(Opcode.PONG, data)

    @property
    def pong_owed(self) -> bool:
        """True while a ping received with ``answer_pings`` off waits for its pong."""
        return self._pong_owed is not None

    def send_owed_pong(self) -> None:
        """Answer the latest ping received while ``answer_pings`` was off, if any.

        Nothing is sent once a close frame was sent (no frame may follow it).
        """
        data, self._pong_owed = self._pong_owed, None
        if data is not None and self.close_sent is None:
            self._write_control(Opcode.PONG, data)

    def send_close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake, or answer the peer's close frame.

        ``code=None`` sends a close frame without a code. Raise ``ValueError``
        for a code that may not be sent or a reason over 123 bytes, and
        ``InvalidState`` if a close frame was already sent.
        """
        payload = encode_close_payload(code, reason)
        self._check_can_send()
        self._send_close_frame(payload, code, reason)

    def fail(self, code: int = CloseCode.INTERNAL_ERROR, reason: str = "") -> None:
        """Fail the connection (RFC 6455 7.1.7): send a close frame if we still can, then stop.

        Input is discarded from now on and ``should_close_transport`` turns
        true: the I/O layer writes what is queued and closes TCP at once.
        """
        if self.close_sent is None and self.state is State.OPEN:
            reason = truncate_reason(reason)
            self._send_close_frame(encode_close_payload(code, reason), code, reason)
        self._stop_reading(close_transport=True)

    # -- hooks for the handshake, used by ClientProtocol and ServerProtocol ----

    def _receive_handshake(self) -> None:
        """Consume handshake bytes from ``self._buffer``; a subclass implements it."""
        raise InvalidState("this protocol object has no opening handshake")

    def _receive_handshake_eof(self) -> None:
        """React to EOF during the handshake; a subclass implements it."""
        raise InvalidState("this protocol object has no opening handshake")

    def _write(self, data: bytes) -> None:
        """Queue bytes for the network."""
        self._output.append(data)

    def _emit(self, event: Event) -> None:
        """Queue an event for the application."""
        self._events.append(event)

    def _open(self, extensions: Sequence[Extension], subprotocol: str | None) -> None:
        """Finish a successful handshake: frames flow from now on."""
        self.extensions = list(extensions)
        self.subprotocol = subprotocol
        self.state = State.OPEN
        # Frames may have arrived right behind the handshake.
        self._parse_frames()

    def _fail_handshake(self, exc: InvalidHandshake) -> None:
        """Finish a failed handshake: nothing more is read, TCP should close."""
        self.handshake_exc = exc
        self.state = State.CLOSED
        self._stop_reading(close_transport=True)

    def _stop_reading(self, *, close_transport: bool) -> None:
        """Discard what is buffered and all input from now on; maybe ask for TCP to close."""
        self._discarding = True
        self._buffer.clear()
        if close_transport:
            self._close_transport = True

    # -- sending, internals ----------------------------------------------------

    def _check_can_send(self) -> None:
        if self.state is State.CONNECTING:
            raise InvalidState("the opening handshake has not completed")
        if self.close_sent is not None or self.state is State.CLOSED:
            raise InvalidState("the connection is closing or closed")

    def _send_data(self, opcode: int, payload: bytes, fin: bool) -> None:
        self._check_can_send()
        if opcode == Opcode.CONTINUATION:
            if self._out_opcode is None:
                raise InvalidState("no fragmented message is being sent")
        elif self._out_opcode is not None:
            raise InvalidState("a fragmented message is being sent: finish it first")
        else:
            self._out_opcode = opcode
        if fin:
            self._out_opcode = None
        rsv1 = False
        if self.extensions:
            frame = Frame(_OPCODES[opcode], payload, fin)
            for extension in self.extensions:
                frame = extension.encode(frame)
            payload, rsv1 = frame.payload, frame.rsv1
        mask = self._masks.next_mask() if self._masks is not None else None
        self._output += encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)

    def _send_control(self, opcode: int, data: bytes) -> None:
        if len(data) > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"control frames carry at most 125 bytes, not {len(data)}")
        self._check_can_send()
        self._write_control(opcode, bytes(data))

    def _write_control(self, opcode: int, payload: bytes) -> None:
        mask = self._masks.next_mask() if self._masks is not None else None
        self._output += encode_frame(opcode, payload, mask=mask)

    def _send_close_frame(self, payload: bytes, code: int | None, reason: str) -> None:
        self._write_control(Opcode.CLOSE, payload)
        self.close_sent = Close(CloseCode.NO_STATUS_RCVD if code is None else code, reason)
        if self.close_received is None:
            self.close_sent_first = True
        self._out_opcode = None
        self.state = State.CLOSING

    # -- receiving, internals --------------------------------------------------

    def _parse_frames(self) -> None:
        """Parse every complete frame in the buffer."""
        buffer = self._buffer
        while not self._discarding:
            header = self._header
            if header is None:
                try:
                    header = self._parse_header()
                except ProtocolError as exc:
                    self._fail_with(exc)
                    return
                if header is None:
                    return
                self._header = header
            opcode, fin, rsv1, length, mask, start = header
            if not opcode & _CONTROL_BIT and self.receive_paused:
                return  # the header waits in self._header for a new budget
            end = start + length
            if len(buffer) < end:
                if self._is_plain_text_frame(opcode, rsv1):
                    try:
                        self._decode_partial_text(mask, start)
                    except ProtocolError as exc:
                        self._fail_with(exc)
                return
            self._header = None
            if mask is not None:
                payload = apply_mask(memoryview(buffer)[start:end], mask)
            else:
                payload = bytes(memoryview(buffer)[start:end])
            del buffer[:end]
            try:
                if opcode & _CONTROL_BIT:
                    self._receive_control(opcode, payload)
                else:
                    self._receive_data_frame(opcode, fin, rsv1, payload)
            except ProtocolError as exc:
                self._fail_with(exc)
                return

    def _is_plain_text_frame(self, opcode: int, rsv1: bool) -> bool:
        """True for a frame that carries uncompressed text of a well-formed message."""
        if opcode == _TEXT:
            return self._in_opcode is None and not rsv1
        return opcode == _CONTINUATION and self._in_opcode == _TEXT and not self._in_compressed

    def _decode_partial_text(self, mask: bytes | None, start: int) -> None:
        """Decode the text that arrived of an incomplete frame: invalid UTF-8 fails at once."""
        checked = self._partial_checked
        available = len(self._buffer) - start
        if available == checked:
            return
        chunk = memoryview(self._buffer)[start + checked : start + available]
        if mask is not None:
            shift = checked % 4
            data = apply_mask(chunk, mask[shift:] + mask[:shift])
        else:
            data = bytes(chunk)
        del chunk
        self._partial_text.append(self._decode_text(data, fin=False))
        self._partial_checked = available

    def _parse_header(self) -> tuple[int, bool, bool, int, bytes | None, int] | None:
        """Read and check the header at the front of the buffer, or return None if incomplete.

        Every rule that the header alone decides is enforced here, before the
        payload is buffered: opcode, reserved bits, control frame rules,
        masking direction and the size limit.
        """
        buffer = self._buffer
        available = len(buffer)
        if available < 2:
            return None
        first, second = buffer[0], buffer[1]
        fin = bool(first & 0x80)
        rsv1 = bool(first & 0x40)
        opcode = first & 0x0F
        length = second & 0x7F
        masked = bool(second & 0x80)
        start = 2
        if opcode not in _VALID_OPCODES:
            raise ProtocolError(f"reserved opcode {opcode:#x}")
        if first & 0x30 or (rsv1 and not self.extensions):
            raise ProtocolError("reserved bits must be 0 when no extension defines them")
        if opcode & _CONTROL_BIT:
            if not fin:
                raise ProtocolError("control frames must not be fragmented")
            if length > MAX_CONTROL_PAYLOAD:
                raise ProtocolError("control frames carry at most 125 bytes")
            if rsv1:
                raise ProtocolError("reserved bits must be 0 on control frames")
        elif length == 126:
            if available < 4:
                return None
            length = int.from_bytes(buffer[2:4], "big")
            start = 4
        elif length == 127:
            if available < 10:
                return None
            length = int.from_bytes(buffer[2:10], "big")
            if length >> 63:
                raise ProtocolError("the most significant bit of a 64-bit length must be 0")
            start = 10
        if masked != (self._masks is None):  # a server has no mask source
            if masked:
                raise ProtocolError("a server must not mask the frames it sends")
            raise ProtocolError("a client must mask the frames it sends")
        mask = None
        if masked:
            if available < start + 4:
                return None
            mask = bytes(buffer[start : start + 4])
            start += 4
        if self.max_size is not None and not opcode & _CONTROL_BIT:
            # Without extensions a frame may not exceed what its message has left.
            # With them it may be compressed: bound it by max_size here, and let
            # the extension check the decompressed size against what is left.
            limit = self.max_size
            if opcode == _CONTINUATION and not self.extensions:
                limit -= self._in_size
            if length > limit:
                raise PayloadTooBig(
                    f"frame of {length} bytes exceeds the message size limit of "
                    f"{self.max_size} bytes"
                )
        return opcode, fin, rsv1, length, mask, start

    def _receive_control(self, opcode: int, payload: bytes) -> None:
        if opcode == Opcode.PING:
            self._emit(Ping(payload))
            if self.close_sent is None:
                if self.answer_pings:
                    self._pong_owed = None  # this pong answers the older pings too
                    self._write_control(Opcode.PONG, payload)
                else:
                    self._pong_owed = payload  # the latest ping is answered later
        elif opcode == Opcode.PONG:
            self._emit(Pong(payload))
        else:
            code, reason = parse_close_payload(payload)
            self.close_received = Close(code, reason)
            self._emit(self.close_received)
            if self.close_sent is None:
                self.close_sent_first = False
                # Echo the code and the reason, as browsers and Node's ws do: a page
                # that closes with a reason finds it in its close event.
                echo = None if code == CloseCode.NO_STATUS_RCVD else code
                self._send_close_frame(payload, echo, reason)
            # Nothing may follow a close frame (RFC 6455 5.5.1).
            self._stop_reading(close_transport=False)

    def _receive_data_frame(self, opcode: int, fin: bool, rsv1: bool, payload: bytes) -> None:
        if opcode == _CONTINUATION:
            if self._in_opcode is None:
                raise ProtocolError("continuation frame without a message to continue")
            opcode = self._in_opcode
            self._in_frames += 1
            if (
                self.max_fragments is not None
                and self._in_frames > self.max_fragments + self._in_size // BYTES_PER_EXTRA_FRAGMENT
            ):
                raise TooManyFragments(
                    f"message of {self._in_size} bytes arrived in over {self._in_frames - 1} "
                    "frames: too many for its size"
                )
        elif self._in_opcode is not None:
            raise ProtocolError("new message started before the previous one finished")
        else:
            self._in_opcode = opcode
            self._in_size = 0
            self._in_frames = 1
            self._in_compressed = rsv1

        if self.extensions:
            frame = Frame(_OPCODES[opcode if self._in_frames == 1 else 0], payload, fin, rsv1)
            remaining = None if self.max_size is None else self.max_size - self._in_size
            for extension in reversed(self.extensions):
                frame = extension.decode(frame, max_size=remaining)
            if frame.rsv1:
                raise ProtocolError("reserved bit 1 set but no extension used it")
            payload = frame.payload
        size = self._in_size + len(payload)
        if self.max_size is not None and size > self.max_size:
            raise PayloadTooBig(
                f"message of over {self.max_size} bytes exceeds the limit of {self.max_size}"
            )
        self._in_size = size

        if opcode == _TEXT:
            checked = self._partial_checked
            if checked:
                text = self._decode_text(payload[checked:], fin)
                text = "".join(self._partial_text) + text
                self._partial_checked = 0
                self._partial_text = []
            else:
                text = self._decode_text(payload, fin)
            self._emit(Text(text, fin))
        else:
            self._emit(Binary(payload, fin))
        if self._budget_size is not None:
            self._budget_size -= len(payload)
        if fin:
            self._in_opcode = None
            self._in_decoder = None
            if self._budget_messages is not None:
                self._budget_messages -= 1

    def _decode_text(self, payload: bytes, fin: bool) -> str:
        """Decode one frame of a text message, failing as soon as the UTF-8 is invalid."""
        decoder = self._in_decoder
        try:
            if decoder is None:
                if fin:
                    return payload.decode()
                decoder = self._in_decoder = codecs.getincrementaldecoder("utf-8")()
            text = decoder.decode(payload, fin)
        except UnicodeDecodeError as exc:
            raise InvalidPayload(f"invalid UTF-8 in a text message: {exc.reason}") from None
        pending = decoder.getstate()[0]
        # CPython's decoder waits for a third byte before rejecting a UTF-16
        # surrogate (ED A0-BF); reject it at once so invalid text fails fast.
        if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
            raise InvalidPayload("invalid UTF-8 in a text message: encoded surrogate")
        return text

    def _fail_with(self, exc: ProtocolError) -> None:
        if self.defer_failures:
            self._pending_failure = exc
            self._stop_reading(close_transport=False)
            return
        self.protocol_error = exc
        self.fail(exc.close_code, str(exc))
