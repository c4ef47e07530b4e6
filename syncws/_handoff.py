"""Taking a WebSocket's connection away from the WSGI server, so that its worker goes free.

What it guards: the WSGI server's descriptor for the connection. Once the
101 is decided, ``take()`` duplicates that descriptor for syncws, then puts a
stand-in on the server's descriptor number with ``dup2()``: one end of a
socket pair whose other end sent EOF. Whatever the server does next (write
its response, look for a keep-alive request, shut down, close) happens on
the stand-in and never reaches the WebSocket, so the server may finish the
request and go back to serving HTTP: its worker (thread, process, greenlet)
is free. The stand-in's far end stays open until the server has written its
response (``release()``, called when the server closes the response
iterable, or at the latest when the WebSocket ends), so the server's
response goes into a buffer nobody reads, its access log shows the 101, and
nothing is logged as an error.

The descriptor is found through what each server puts in the environ:
``gunicorn.socket``, ``werkzeug.socket``, ``eventlet.input.get_socket()``, or
the buffered ``wsgi.input`` itself (``fileno()``: wsgiref, gevent's pywsgi,
Django's runserver, which wraps it). Bytes the server read beyond the
request's headers are taken from its buffer. TLS connections (an
``SSLSocket``) can't be duplicated: ``take()`` returns None for them and the
caller keeps the worker.

Threads: ``take()`` runs in the server's request thread, before the
response; ``release()`` may run in any thread, once or more.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import socket
import ssl
import sys
import threading
from collections.abc import Mapping
from typing import Any

__all__ = [
    "HandOff",
    "allow_green_readers",
    "drain_gunicorn",
    "findable",
    "held_socket",
    "take",
]


class HandOff:
    """A connection taken from the server: syncws's socket and what the server had buffered."""

    def __init__(
        self, sock: socket.socket, early: bytes, far_end: socket.socket, *, late: bool = False
    ) -> None:
        #: syncws's own descriptor for the connection (blocking mode is the caller's).
        self.sock = sock
        #: Bytes the client sent behind its request, which the server had read already.
        self.early = early
        self._far_end: socket.socket | None = far_end
        self._lock = threading.Lock()
        #: True if the server writes its response after closing the response
        #: iterable (uWSGI): ``release()`` must wait for the WebSocket's end.
        self.late = late

    def release(self) -> None:
        """Close the stand-in's far end: the server's response was written (any thread)."""
        with self._lock:
            far_end, self._far_end = self._far_end, None
        if far_end is not None:
            far_end.close()


def allow_green_readers() -> None:
    """Under eventlet's monkey-patching, let two green threads wait on one socket.

    A WebSocket's handler and the background thread both wait for its
    socket to be readable, which eventlet's hub refuses by default ("Second
    simultaneous read"). gevent needs nothing. Any thread; idempotent.
    """
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("select"):
        debug = importlib.import_module("eventlet.debug")
        debug.hub_prevent_multiple_readers(False)


def held_socket(environ: Mapping[str, Any]) -> socket.socket | None:
    """The server's own socket where ``take()`` can't duplicate it (TLS), else None."""
    for key in ("gunicorn.socket", "werkzeug.socket"):
        sock = environ.get(key)
        if isinstance(sock, ssl.SSLSocket):
            return sock
    return None


def findable(environ: Mapping[str, Any]) -> bool:
    """True if ``take()`` finds the connection's descriptor (it doesn't look further)."""
    return _locate(environ) is not None


def take(environ: Mapping[str, Any]) -> HandOff | None:
    """Take the request's connection from the server; None if it doesn't give it away."""
    if held_socket(environ) is not None:
        return None
    allow_green_readers()
    found = _locate(environ)
    if found is None:
        return None
    fd, buffered, late = found
    try:
        ours = socket.socket(fileno=os.dup(fd))
    except OSError:  # not a socket: a server that reads requests from elsewhere
        return None
    if ours.type != socket.SOCK_STREAM:
        ours.close()
        return None
    stand_in, far_end = socket.socketpair()
    far_end.shutdown(socket.SHUT_WR)  # the server reads EOF from now on
    os.dup2(stand_in.fileno(), fd, inheritable=False)
    stand_in.close()
    early = _drain(buffered)
    return HandOff(ours, early, far_end, late=late)


def _locate(environ: Mapping[str, Any]) -> tuple[int, Any, bool] | None:
    """The connection's descriptor, the server's buffered reader of it, and ``late``."""
    stream = environ.get("wsgi.input")
    for key in ("gunicorn.socket", "werkzeug.socket"):
        sock = environ.get(key)
        if isinstance(sock, socket.socket):
            return sock.fileno(), stream, False
    eventlet_input = environ.get("eventlet.input")
    if eventlet_input is not None and hasattr(eventlet_input, "get_socket"):
        return eventlet_input.get_socket().fileno(), getattr(eventlet_input, "rfile", None), False
    if "uwsgi.version" in environ:  # uWSGI's own module, present in its workers
        uwsgi = importlib.import_module("uwsgi")
        return int(uwsgi.connection_fd()), None, True
    reader = _buffered_reader(stream)
    if reader is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        return reader.fileno(), reader, False
    return None


def _buffered_reader(stream: Any) -> Any:
    """The file object over the socket inside ``wsgi.input``, if there is one."""
    # gevent's pywsgi wraps its reader in an Input with an ``rfile``; Django's
    # runserver in a LimitedStream that keeps the reader's bound ``read``.
    for candidate in (stream, getattr(stream, "rfile", None)):
        if isinstance(candidate, io.BufferedReader | io.RawIOBase):
            return candidate
        if candidate is not None and hasattr(candidate, "read1") and hasattr(candidate, "fileno"):
            return candidate
    bound = getattr(getattr(stream, "_read", None), "__self__", None)
    if bound is not None and hasattr(bound, "fileno"):
        return bound
    return None


def drain_gunicorn(body: Any) -> bytes:
    """What gunicorn's parser read beyond the request's headers (``wsgi.input``'s buffer)."""
    unreader: Any = getattr(getattr(body, "reader", None), "unreader", None)
    if hasattr(unreader, "take_buffered"):
        return bytes(unreader.take_buffered())
    if isinstance(getattr(unreader, "buf", None), io.BytesIO):  # older gunicorn
        early = unreader.buf.getvalue()
        unreader.buf = io.BytesIO()
        return bytes(early)
    return b""


def _drain(buffered: Any) -> bytes:
    """What the server read beyond the request's headers (its descriptor reads EOF now)."""
    if buffered is None or not hasattr(buffered, "read1"):
        return drain_gunicorn(buffered)
    chunks = []
    # The buffer first, then EOF from the stand-in: never a wait.
    with contextlib.suppress(OSError, ValueError):
        while chunk := buffered.read1(65536):
            chunks.append(chunk)
    return b"".join(chunks)
