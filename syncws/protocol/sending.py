"""The sending part of the protocol core: data and control frames, closing, failing.

``ProtocolSender`` turns what the application sends into frames on the output
queue (``data_to_send()`` collects them): messages whole or in fragments,
messages encoded once for many connections (broadcast), pings and pongs, and
our close frame, either to start the closing handshake or to fail the
connection (RFC 6455 7.1.7). It checks that the state allows sending and that
a fragmented message is finished before another starts; it runs the
extensions' encoders and masks a client's frames. ``frame_message`` is the
short road for the commonest case, a whole message of one frame (whole.py):
its bytes at once, or None for the usual road. No I/O and no threads: the
I/O layer serializes the calls.
"""

from __future__ import annotations

from collections.abc import Hashable

from ..exceptions import InvalidState
from .close_codes import CloseCode
from .events import Close
from .frames import Frame, Opcode
from .framing import MAX_CONTROL_PAYLOAD, encode_close_payload, encode_frame, truncate_reason
from .state import ProtocolState, Side, State
from .whole import encode_whole

__all__ = ["ProtocolSender"]

# Opcode(value) costs a microsecond (an enum lookup); this dict, a tenth of it.
_OPCODES = {int(opcode): opcode for opcode in Opcode}


class ProtocolSender(ProtocolState):
    """Frames out: messages, pings and pongs, our close frame."""

    __slots__ = ()

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

    def frame_message(self, data: str | bytes, text: bool) -> bytes | None:
        """``send_text``/``send_binary`` for the common case: a whole message as one frame.

        Returns the frame's bytes, for the caller to write in order with what
        ``data_to_send()`` gives, when the connection is open, no fragmented
        message is being sent, no extension is negotiated and the message is
        under 64 KiB; the state moves as a sent message moves it. Else None
        and nothing changes: use ``send_text``/``send_binary``, which queue
        the frame or raise the usual error.
        """
        if self.state is not State.OPEN or self._out_opcode is not None or self.extensions:
            return None
        payload = data.encode() if isinstance(data, str) else bytes(data)  # bytes: no copy
        length = len(payload)
        if length >= 65536:
            return None
        masks = self._masks
        mask = None if masks is None else masks.next_mask()
        return encode_whole(payload, 0x81 if text else 0x82, mask)

    @property
    def sending_fragments(self) -> bool:
        """True between the first and the final frame of a fragmented message we send."""
        return self._out_opcode is not None

    def sharing_key(self) -> Hashable | None:
        """Equal for connections on which a whole message encodes to equal bytes.

        ``None`` when it can't be shared: a client masks every frame with its
        own random key, and an extension may depend on the connection's
        history (deflate with ``keep_state``). See ``prepare_message`` and
        ``send_prepared``.
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

    def send_prepared(self, frames: list[bytes], payload: bytes) -> None:
        """Send a message encoded by ``prepare_message``; ``payload``: the message's bytes."""
        self._check_can_send()
        if self._out_opcode is not None:
            raise InvalidState("a fragmented message is being sent: finish it first")
        self._output += frames
        self.prepared_sent(payload)

    def prepared_sent(self, payload: bytes) -> None:
        """A message encoded by ``prepare_message`` went out: the extensions follow.

        ``send_prepared`` calls it; an I/O layer that queues the prepared
        frames itself (having checked what ``send_prepared`` checks) calls it
        for each connection whose ``sharing_key()`` names extensions.
        """
        for extension in self.extensions:
            extension.sent_standalone(payload)

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

    # -- internals ---------------------------------------------------------------

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
