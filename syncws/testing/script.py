"""The steps a test scripts on one end of a connection: ``ScriptedPeer``'s and ``ScriptedClient``'s.

Each step runs in the test's thread, is bounded by ``timeout`` and fails with
an ``AssertionError`` that says what the other end didn't do. The subclass
says where the connection comes from (``connection``) and what the other end
is called in those messages (``other``).
"""

from __future__ import annotations

from ..exceptions import ConnectionClosed
from ..threaded.connection import Connection

__all__ = ["Script"]


class Script:
    """Steps on a connection: recv, expect, send, send_raw, ping, close, expect_close."""

    #: What the other end is called in the failure messages: "server" or "client".
    other = "peer"
    #: Bound on every wait, in seconds.
    timeout: float

    @property
    def connection(self) -> Connection:
        """The connection the steps run on (the subclass says which)."""
        raise NotImplementedError

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The other end's next message."""
        try:
            return self.connection.recv(timeout=timeout or self.timeout)
        except TimeoutError:
            raise AssertionError(f"the {self.other} sent no message in time") from None

    def expect(self, message: str | bytes, timeout: float | None = None) -> None:
        """Assert that the next message is ``message`` (text for str, binary for bytes)."""
        try:
            received = self.recv(timeout)
        except ConnectionClosed as exc:
            raise AssertionError(f"expected {message!r}, but the connection closed: {exc}") from exc
        if received != message:
            raise AssertionError(f"expected {message!r}, got {received!r}")

    def send(self, message: str | bytes) -> None:
        """Send a message to the other end."""
        self.connection.send(message, timeout=self.timeout)

    def send_raw(self, data: bytes) -> None:
        """Write ``data`` as it is: hand-made frames, broken ones included (a client masks)."""
        self.connection.write_raw(data, self.timeout)

    def ping(self, data: bytes = b"ping") -> float:
        """Ping the other end; return the round trip once its pong arrives."""
        return self.connection.ping(data).round_trip(self.timeout)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason``."""
        self.connection.close(code, reason)

    def expect_close(
        self, code: int | None = None, reason: str | None = None, timeout: float | None = None
    ) -> None:
        """Assert that the other end closes the connection next (with ``code``/``reason``)."""
        try:
            message = self.connection.recv(timeout=timeout or self.timeout)
        except ConnectionClosed as exc:
            if code is not None and exc.code != code:
                raise AssertionError(f"expected close code {code}, got {exc}") from exc
            if reason is not None and exc.reason != reason:
                raise AssertionError(f"expected close reason {reason!r}, got {exc}") from exc
            return
        except TimeoutError:
            raise AssertionError(f"the {self.other} didn't close the connection in time") from None
        raise AssertionError(f"expected the connection to close, got message {message!r}")
