"""A WebSocket server: one thread per connection runs the application's handler.

``serve(handler, host, port)`` listens and returns a ``Server``;
``serve_forever()`` accepts connections until ``shutdown()``. Each accepted
connection gets a thread that runs the opening handshake (bounded by
``open_timeout``), then ``handler(connection)``, then closes the connection:
normally (1000) when the handler returns, with 1011 when it raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import selectors
import socket
import ssl as ssl_module
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal, cast

from ...exceptions import InvalidState
from ...protocol.close_codes import CloseCode
from ...protocol.connection import DEFAULT_MAX_SIZE, State
from ...protocol.extensions import ServerExtensionFactory
from ...protocol.headers import HeadersLike
from ...protocol.server import DEFAULT_SERVER_HEADER, ServerProtocol
from ..connection import DEFAULT_WRITE_LIMIT
from ..deadline import Deadline
from ..options import (
    DEFAULT_BACKLOG,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    MaxQueue,
    MaxSize,
    ServerOptions,
    check_close,
    check_count,
)
from ..origins import Origins
from ..runtime import poller
from .connection import (
    Handler,
    ProcessRequest,
    ProcessResponse,
    SelectSubprotocol,
    ServerConnection,
    run_handler,
)
from .factory import connection_factory
from .listener import listen, refuse_busy

__all__ = ["Server", "ServerConnection", "serve", "unix_serve"]

logger = logging.getLogger("syncws")

#: How long ``shutdown()`` waits for handlers to return after closing their connections.
SHUTDOWN_GRACE = 10.0
#: How long ``shutdown()`` then waits, at most, for sockets still draining an
#: HTTP answer (a refused handshake, a page from ``process_request``) to end
#: with the client's EOF, before it closes them.
HTTP_DRAIN_GRACE = 1.0
#: How long the accept loop pauses when the process is out of descriptors
#: (EMFILE) or memory; it resumes earlier when a connection ends.
ACCEPT_PAUSE = 1.0


class Server:
    """A listening socket and the threads of its connections.

    ``serve_forever()`` runs the accept loop; ``shutdown()`` stops it. Used as
    a context manager, leaving the block shuts the server down (whether or
    not ``serve_forever()`` ever ran).

    Signal safety. ``shutdown()`` may run in a signal handler, which Python
    runs in the main thread between any two bytecodes, so it must never wait
    for something the interrupted code holds. The server therefore has no
    lock of its own: its tables (``_connections``, ``_threads``,
    ``_in_shutdown``, ``_draining``) are sets changed only by single ``add``/``discard``/
    ``copy`` calls, each atomic (under the GIL, and per object in
    free-threaded CPython); the one-time steps (serving, finishing) are
    claimed with ``dict.setdefault``, also one atomic call. ``_ended`` is a
    condition only handler threads (on exit) and the finishing thread use.
    """

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        connection_options: ServerOptions,
        *,
        max_connections: int | None = None,
        logger: logging.Logger | None = None,
        unix_path: str | None = None,
    ) -> None:
        self.socket = sock
        self._address = sock.getsockname()
        self.handler = handler
        self.logger = logger or logging.getLogger("syncws")
        self.max_connections = max_connections
        self._options = connection_options
        self._unix_path = unix_path
        self._connections: set[ServerConnection] = set()
        # Connections whose thread ended with the socket still open (an HTTP
        # answer draining until the client's EOF): shutdown() closes them.
        self._draining: set[ServerConnection] = set()
        self._threads: set[threading.Thread] = set()
        # Handler threads waiting in shutdown(): the finish doesn't wait for them.
        self._in_shutdown: set[threading.Thread] = set()
        self._ended = threading.Condition(threading.Lock())
        self._claims: dict[str, tuple[object, int]] = {}
        self._stop_reader, self._stop_writer = socket.socketpair()
        self._stop_reader.setblocking(False)
        self._stop_writer.setblocking(False)
        self._serving: int | None = None
        self._stopping = False
        self._stopped = threading.Event()
        self._paused_until: float | None = None
        self.shutting_down = False
        self._close_code: int = CloseCode.GOING_AWAY
        self._close_reason = ""
        self._keep_connections = False

    # -- introspection -------------------------------------------------------------

    @property
    def connections(self) -> set[ServerConnection]:
        """The open connections (a new set on each call). Safe from any thread."""
        return {c for c in self._connections.copy() if c.state is State.OPEN}

    @property
    def port(self) -> int:
        """The TCP port the server listens on (useful after binding port 0)."""
        return int(self._address[1])

    @property
    def address(self) -> Any:
        """The address the server listens on, as ``getsockname()`` returns it."""
        return self._address

    # -- running -------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Accept connections until ``shutdown()`` is called (from any thread or a signal handler).

        On return every connection is closed and every handler has returned
        (or ``SHUTDOWN_GRACE`` passed). Call it from one thread only.
        """
        me = threading.get_ident()
        token = object()
        if self._claims.setdefault("serve", (token, me))[0] is not token:
            if self._stopping:
                return
            raise InvalidState("serve_forever() is already running")
        # Set before looking at _stopping: a signal handler that runs from
        # here on sees it and only asks; one that ran before set _stopping.
        self._serving = me
        try:
            if not self._stopping:
                self._accept_loop()
        finally:
            self._stopping = True
            self._finish()
            self._serving = None

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._stop_reader, selectors.EVENT_READ)
            selector.register(self.socket, selectors.EVENT_READ)
            listening = True
            while not self._stopping:
                timeout = None
                if self._paused_until is not None:
                    timeout = self._paused_until - time.monotonic()
                    if timeout <= 0:
                        self._paused_until = timeout = None
                if listening != (self._paused_until is None):
                    listening = not listening
                    if listening:
                        selector.register(self.socket, selectors.EVENT_READ)
                        self.logger.info("accepting connections again")
                    else:
                        selector.unregister(self.socket)
                # Off Linux, return now and then: Windows' select() ignores Ctrl-C.
                slice_ = poller.WAKE_SLICE
                if slice_ is not None and (timeout is None or timeout > slice_):
                    timeout = slice_
                for key, _ in selector.select(timeout):
                    if key.fileobj is self.socket:
                        self._accept()
                    else:
                        self._drain_wakeups()

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(OSError):
            while self._stop_reader.recv(4096):
                pass

    def _wake(self) -> None:
        """Wake the accept loop (any thread, signal handlers included: never blocks)."""
        with contextlib.suppress(OSError):
            self._stop_writer.send(b"\0")

    def shutdown(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "", *, close_connections: bool = True
    ) -> None:
        """Stop accepting, close every connection with ``code`` (1001), wait for handlers.

        ``close_connections=False`` (websockets' keyword) leaves open
        connections alone and waits, without a time limit, until their
        handlers return.

        Sockets still draining an HTTP answer (a refused handshake, a page
        from ``process_request``) get up to ``HTTP_DRAIN_GRACE`` (1 s) to end
        with the client's EOF, then are closed: on return the server holds
        no socket.

        Callable from any thread, from a handler (it waits for the other
        handlers, not for its own), and from a signal handler: there, if it
        interrupted ``serve_forever()`` or another ``shutdown()`` in the same
        thread, it only asks, and the interrupted call does the rest before
        returning. ``code`` must be a close code an endpoint may send (1000,
        1001, ..., or 3000-4999) and ``reason`` a str. Idempotent: the first
        call's code and reason win.
        """
        code, reason = check_close(code, reason, "shutdown()")
        if not self._stopping:
            self._close_code, self._close_reason = code, reason
            self._keep_connections = not close_connections
            self._stopping = True
        self._wake()
        me = threading.get_ident()
        if self._serving == me:
            return  # a signal handler inside serve_forever(): it finishes the job
        current = threading.current_thread()
        handler_thread = current in self._threads
        if handler_thread:
            self._in_shutdown.add(current)
            self._notify_ended()
        if self._serving is not None:
            claim = self._claims.get("finish")
            if claim is not None and claim[1] == me:
                return  # a signal handler inside this thread's own finish
            self._stopped.wait()
        else:
            self._finish()

    def _finish(self) -> None:
        me = threading.get_ident()
        token = object()
        claim = self._claims.setdefault("finish", (token, me))
        if claim[0] is not token:
            if claim[1] != me:  # else: a signal handler interrupted this thread's finish
                self._stopped.wait()
            return
        self.shutting_down = True
        self._close_listener()
        current = threading.current_thread()
        if self._keep_connections:  # shutdown(close_connections=False): handlers end it
            self._wait_for_handlers(current, None)
        deadline = Deadline(SHUTDOWN_GRACE)
        connections = self._connections.copy()
        for connection in connections:
            connection.start_closing(self._close_code, self._close_reason)
        for connection in connections:
            if _answered_http(connection):
                continue  # its thread is about to end: waited for with _draining
            if not connection.wait_closed(deadline.remaining()):
                connection._abort()
        self._wait_for_handlers(current, deadline.remaining())
        # The threads have ended (unless one outlived the grace): _draining is complete.
        drained = Deadline(min(HTTP_DRAIN_GRACE, deadline.remaining() or 0.0))
        for connection in self._draining.copy() | {c for c in connections if _answered_http(c)}:
            if not connection.wait_closed(drained.remaining()):
                connection._abort()
        self._stop_reader.close()
        self._stop_writer.close()
        self._stopped.set()

    def _wait_for_handlers(self, current: threading.Thread, timeout: float | None) -> None:
        """Wait for the handlers, except those waiting in shutdown() themselves.

        This thread is among them when a handler called ``shutdown()``.
        """
        deadline = Deadline(timeout)
        with self._ended:
            self._ended.wait_for(
                lambda: not (self._threads - self._in_shutdown - {current}),
                deadline.remaining(),
            )
        for thread in self._threads - self._in_shutdown - {current}:
            thread.join(deadline.remaining())

    def _notify_ended(self) -> None:
        with self._ended:
            self._ended.notify_all()

    def _close_listener(self) -> None:
        self.socket.close()
        if self._unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._unix_path)

    def _accept(self) -> None:
        try:
            sock, address = self.socket.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:
            # Out of descriptors (EMFILE) or memory, mostly: accepting again
            # at once would fail again at once, a busy loop. Pause (as asyncio
            # does), resume after a moment or as soon as a connection ends.
            self.logger.error(
                "accept() failed: %s; pausing accepts for %gs (or until a connection closes)",
                exc,
                ACCEPT_PAUSE,
            )
            self._paused_until = time.monotonic() + ACCEPT_PAUSE
            return
        busy = self.max_connections is not None and len(self._threads) >= self.max_connections
        if busy:
            self.logger.warning("refusing a connection from %s: max_connections reached", address)
            refuse_busy(sock, self._options.server_header)
            return
        thread = threading.Thread(
            target=self._run_connection, args=(sock, address), name="syncws-handler", daemon=True
        )
        self._threads.add(thread)
        thread.start()

    def _run_connection(self, sock: socket.socket, address: Any = None) -> None:
        options = self._options
        deadline = Deadline(options.open_timeout)
        connection: ServerConnection | None = None
        try:
            sock = self._prepare_socket(sock, deadline)
            connection = self._make_connection(sock)
            if address is not None:
                connection.remote_address = address  # accept() said it: no getpeername()
            self._connections.add(connection)
            if self.shutting_down:  # the finish may have missed it: set before its snapshot
                connection._abort()
                return
            if not connection._handshake(
                deadline,
                options.process_request,
                options.process_response,
                options.additional_headers,
            ):
                return
            if self._stopping and not self._keep_connections:
                # shutdown() came during the handshake: close as it closes the others
                # (unless it keeps connections open: close_connections=False).
                connection.start_closing(self._close_code, self._close_reason)
            connection.start_background(recv_next=True)
            run_handler(self.handler, connection)
        except Exception as exc:
            self.logger.info("connection dropped before opening: %s", exc)
            if connection is None:
                sock.close()
            else:
                connection._abort()
        finally:
            if connection is not None:
                self._connections.discard(connection)
                for draining in self._draining.copy():
                    if draining._is_closed():
                        self._draining.discard(draining)
                if not connection._is_closed():
                    self._draining.add(connection)
            self._threads.discard(threading.current_thread())
            self._notify_ended()
            if self._paused_until is not None:
                self._paused_until = time.monotonic()  # a descriptor is free again
                self._wake()

    def _prepare_socket(self, sock: socket.socket, deadline: Deadline) -> socket.socket:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = self._options.ssl
        if context is not None:
            sock.settimeout(deadline.remaining())
            try:
                sock = context.wrap_socket(sock, server_side=True)
            except BaseException:
                sock.close()
                raise
        sock.setblocking(False)
        return sock

    def _make_connection(self, sock: socket.socket) -> ServerConnection:
        options = self._options
        protocol = ServerProtocol(
            origins=options.origin_policy,
            subprotocols=options.subprotocols,
            extensions=options.extensions,
            server_header=options.server_header,
            max_size=options.max_size,
        )
        protocol.max_frame_size = options.max_frame_size
        connection: ServerConnection = (options.create_connection or ServerConnection)(
            sock,
            protocol,
            self,
            max_queue=options.max_queue,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
            write_limit=options.write_limit,
            logger=self.logger,
        )
        select = options.select_subprotocol
        if select is not None:
            protocol.select_subprotocol = lambda offered, _available: select(connection, offered)
        return connection

    # -- context manager -----------------------------------------------------------

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


def _answered_http(connection: ServerConnection) -> bool:
    """True once the handshake ended with an HTTP answer (not 101): the socket only drains."""
    response = connection.response
    return response is not None and response.status != 101


#: websockets' keywords for ``socket.create_server()`` that ``serve()`` takes.
_SERVER_SOCKET_KEYWORDS = frozenset({"family", "reuse_port", "dualstack_ipv6"})


def serve(
    handler: Handler,
    host: str | None = None,
    port: int | None = None,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    process_request: ProcessRequest | None = None,
    process_response: ProcessResponse | None = None,
    select_subprotocol: SelectSubprotocol | None = None,
    origins: Origins | None = None,
    subprotocols: Sequence[str] | None = None,
    compression: Literal["deflate"] | None = "deflate",
    extensions: Sequence[ServerExtensionFactory] | None = None,
    additional_headers: HeadersLike | None = None,
    server_header: str | None = DEFAULT_SERVER_HEADER,
    max_size: MaxSize = DEFAULT_MAX_SIZE,
    max_queue: MaxQueue = DEFAULT_MAX_QUEUE,
    write_limit: int = DEFAULT_WRITE_LIMIT,
    max_connections: int | None = None,
    open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    backlog: int = DEFAULT_BACKLOG,
    create_connection: type[ServerConnection] | None = None,
    logger: logging.Logger | None = None,
    **socket_kwargs: Any,
) -> Server:
    """Listen on ``host``:``port`` (or use ``sock``) and return a ``Server``.

    ``handler(connection)`` runs in a thread of its own for each connection.
    ``host=None`` listens on every interface, IPv4 and IPv6; an IPv6 literal
    such as ``"::1"`` works as is. ``port=0`` picks a free port
    (``server.port``). ``extensions`` replaces what ``compression`` chooses
    with extension factories of your own. See the documentation for every
    option. ``family``, ``reuse_port`` and ``dualstack_ipv6`` go to
    ``socket.create_server()``, as websockets passes them.
    """
    options = ServerOptions(
        ssl=ssl,
        process_request=process_request,
        process_response=process_response,
        select_subprotocol=select_subprotocol,
        origins=origins,
        subprotocols=subprotocols,
        compression=compression,
        extensions=extensions,
        additional_headers=additional_headers,
        server_header=server_header,
        max_size=cast("int | None", max_size),  # a tuple: split by ServerOptions
        max_queue=cast("int | None", max_queue),
        write_limit=write_limit,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        create_connection=create_connection,
    )
    options = dataclasses.replace(
        options,
        create_connection=connection_factory(
            options.create_connection or ServerConnection, write_limit=write_limit, logger=logger
        ),
    )
    check_count("max_connections", max_connections, 1, none="no limit")
    check_count("backlog", backlog, 0)
    unknown = sorted(set(socket_kwargs) - _SERVER_SOCKET_KEYWORDS)
    if unknown:
        raise TypeError(f"serve() got an unexpected keyword argument {unknown[0]!r}")
    if sock is None:
        if port is None:
            raise TypeError("serve() needs a port (0 picks a free one) or a sock")
        if socket_kwargs:
            sock = socket.create_server((host or "", port), backlog=backlog, **socket_kwargs)
        else:
            sock = listen(host, port, backlog)
    elif socket_kwargs:
        raise TypeError("pass either sock or socket.create_server()'s keywords, not both")
    elif host is not None or port is not None:
        raise TypeError("pass either host and port, or sock, not both")
    return Server(sock, handler, options, max_connections=max_connections, logger=logger)


def unix_serve(handler: Handler, path: str, **kwargs: Any) -> Server:
    """Like ``serve()``, on a Unix socket at ``path`` (removed again at shutdown)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(kwargs.pop("backlog", DEFAULT_BACKLOG))
    except BaseException:
        sock.close()
        raise
    server = serve(handler, sock=sock, **kwargs)
    server._unix_path = path
    return server
