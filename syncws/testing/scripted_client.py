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

from ..exceptions import InvalidStatus
from ..threaded.client import ClientConnection, connect
from .script import Script

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


class ScriptedClient(Script):
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

    other = "server"

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
