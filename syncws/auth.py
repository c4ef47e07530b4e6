"""``basic_auth()``: HTTP Basic authentication of the opening handshake, as websockets has it.

``serve(handler, ..., process_request=basic_auth(realm="chat",
credentials=("alice", "secret")))`` refuses a handshake without valid
credentials with 401 and a ``WWW-Authenticate`` challenge, and sets
``connection.username`` before the handler runs. The returned hook runs in
the connection's thread, during the handshake; it keeps no state but the
credentials. Passwords are compared in constant time.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Iterable
from typing import Any

from .protocol.http11 import Request, Response
from .threaded.server.connection import ServerConnection

__all__ = ["basic_auth"]

Credentials = tuple[str, str]


def _is_pair(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(item, str) for item in value)
    )


def basic_auth(
    realm: str = "",
    credentials: Credentials | Iterable[Credentials] | None = None,
    check_credentials: Callable[[str, str], bool] | None = None,
) -> Callable[[ServerConnection, Request], Response | None]:
    """A ``process_request`` hook that requires HTTP Basic credentials.

    Give either ``credentials`` (a ``(username, password)`` pair or a list of
    pairs) or ``check_credentials(username, password) -> bool``, not both.
    On success the connection's ``username`` is set; otherwise the client
    gets 401 with ``WWW-Authenticate: Basic realm="..."``. To chain it with a
    hook of your own, call it from yours. Called at setup, in any thread.

    Raises:
        ValueError: both or neither of ``credentials`` and ``check_credentials``.
        TypeError: ``credentials`` isn't a pair of strings or a list of them.
    """
    if (credentials is None) == (check_credentials is None):
        raise ValueError("provide either credentials or check_credentials")
    if credentials is not None:
        pairs: list[Any] = [credentials] if _is_pair(credentials) else list(credentials)
        if not pairs or not all(_is_pair(pair) for pair in pairs):
            raise TypeError(f"credentials are (username, password) pairs, not {credentials!r}")
        known = dict(pairs)

        def check(username: str, password: str) -> bool:
            expected = known.get(username)
            if expected is None:
                return False
            return hmac.compare_digest(
                expected.encode(errors="surrogateescape"),
                password.encode(errors="surrogateescape"),
            )

        check_credentials = check
    verify = check_credentials
    assert verify is not None
    challenge = f'Basic realm="{realm}", charset="UTF-8"'

    def refuse(connection: ServerConnection, text: str) -> Response:
        response = connection.respond(401, text)
        response.headers["WWW-Authenticate"] = challenge
        return response

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return refuse(connection, "Missing credentials\n")
        scheme, _, token = authorization.partition(" ")
        try:
            if scheme.lower() != "basic":
                raise ValueError(scheme)
            decoded = base64.b64decode(token.strip(), validate=True).decode()
            username, sep, password = decoded.partition(":")
            if not sep:
                raise ValueError("no colon")
        except ValueError:  # binascii.Error and UnicodeDecodeError too
            return refuse(connection, "Unsupported credentials\n")
        if not verify(username, password):
            return refuse(connection, "Invalid credentials\n")
        connection.username = username
        return None

    return process_request
