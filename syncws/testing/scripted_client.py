"""``ScriptedClient``: a client your test drives step by step, to test a WebSocket server.

The mirror of ``ScriptedPeer``: the test connects, sends, expects messages
and closes, and each step fails with an ``AssertionError`` that says what
didn't happen. ``expect_refused()`` asserts that a handshake is refused with
an HTTP status. Methods run in the test's thread; each wait is bounded by
``timeout``. No thread of its own: the connection's background thread does
the reading, as for any client.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ..exceptions import ConnectionClosed, InvalidStatus
from ..threaded.client import ClientConnection, connect

__all__ = ["ScriptedClient", "expect_refused"]

#: Default bound on every wait, in seconds.
TIMEOUT = 10.0


def expect_refused(uri: str, status: int | None = None, **options: Any) -> int:
    """Assert that the server refuses a WebSocket at ``uri`` (with ``status`` if given).

    ``options`` go to ``connect()`` (``origin``, ``additional_headers``...).
    Return the status the server answered. Any thread.
    """
    options.setdefault("open_timeout", TIMEOUT)
    try:
        client = connect(uri, **options)
    except InvalidStatus as exc:
        answered = exc.response.status
        if status is not None and answered != status:
            raise AssertionError(f"expected HTTP {status}, the server answered {exc}") from exc
        return answered
    client.close()
    raise AssertionError(f"expected the server to refuse {uri}, it accepted the WebSocket")


class ScriptedClient:
    """A client your test drives step by step, to test a WebSocket server.

    .. code-block:: python

        with ScriptedClient(server_uri) as scripted:   # connects (the handshake is done)
            scripted.expect("welcome")                 # AssertionError if it sent something else
            scripted.send("hello")
            scripted.expect("hello back")
            scripted.close()                           # or expect_close(4000) if the server closes

    ``options`` go to ``connect()`` (``origin``, ``additional_headers``,
    ``subprotocols``...). ``send_raw()`` writes bytes as they are: masked
    frames of your own making, broken ones included.
    """

    def __init__(self, uri: str, *, timeout: float = TIMEOUT, **options: Any) -> None:
        self.uri = uri
        self.timeout = timeout
        self._options = options
        self._connection: ClientConnection | None = None

    def __enter__(self) -> ScriptedClient:
        self._options.setdefault("open_timeout", self.timeout)
        self._connection = connect(self.uri, **self._options)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            self._connection.close()

    @property
    def connection(self) -> ClientConnection:
        """The client connection (inside the ``with`` block)."""
        if self._connection is None:
            raise RuntimeError("use ScriptedClient in a with block: it connects on entry")
        return self._connection

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The server's next message."""
        try:
            return self.connection.recv(timeout=timeout or self.timeout)
        except TimeoutError:
            raise AssertionError("the server sent no message in time") from None

    def expect(self, message: str | bytes, timeout: float | None = None) -> None:
        """Assert that the server's next message is ``message`` (text for str, binary for bytes)."""
        try:
            received = self.recv(timeout)
        except ConnectionClosed as exc:
            raise AssertionError(f"expected {message!r}, but the connection closed: {exc}") from exc
        if received != message:
            raise AssertionError(f"expected {message!r}, got {received!r}")

    def send(self, message: str | bytes) -> None:
        """Send a message to the server."""
        self.connection.send(message, timeout=self.timeout)

    def send_raw(self, data: bytes) -> None:
        """Write ``data`` to the server as it is (a client's frames must be masked)."""
        self.connection.write_raw(data, self.timeout)

    def ping(self, data: bytes = b"ping") -> float:
        """Ping the server; return the round trip once its pong arrives."""
        return self.connection.ping(data).wait(self.timeout)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason``."""
        self.connection.close(code, reason)

    def expect_close(
        self, code: int | None = None, reason: str | None = None, timeout: float | None = None
    ) -> None:
        """Assert that the server closes the connection next (with ``code``/``reason`` if given)."""
        try:
            message = self.connection.recv(timeout=timeout or self.timeout)
        except ConnectionClosed as exc:
            if code is not None and exc.code != code:
                raise AssertionError(f"expected close code {code}, got {exc}") from exc
            if reason is not None and exc.reason != reason:
                raise AssertionError(f"expected close reason {reason!r}, got {exc}") from exc
            return
        except TimeoutError:
            raise AssertionError("the server didn't close the connection in time") from None
        raise AssertionError(f"expected the connection to close, got message {message!r}")
