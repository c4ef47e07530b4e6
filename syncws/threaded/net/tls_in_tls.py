"""TLS inside TLS: ``wss://`` through an ``https://`` proxy.

The proxy's tunnel is an ``ssl.SSLSocket`` (TLS to the proxy); the
WebSocket server's TLS runs inside it. The standard library can't wrap an
``SSLSocket`` in another one (the inner one would use the raw descriptor),
so the inner TLS is an ``ssl.SSLObject`` working on two ``MemoryBIO``s, and
``TLSInTLS`` moves its records through the outer socket. It offers the few
socket methods the connection uses (``recv_into``, ``send``, ``pending``,
``fileno``, ``shutdown``, ``close``, ``getpeername``, ``getsockname``) with the
semantics of a non-blocking ``SSLSocket``:

- ``recv_into`` returns what both layers can decrypt now, raises
  ``ssl.SSLWantReadError`` when only the descriptor can bring more, and 0 at
  EOF (a missing close_notify counts as EOF, as ``suppress_ragged_eofs``).
- ``pending`` counts every byte held in user space (the inner layer's
  decrypted bytes, its undecrypted input, the outer layer's decrypted bytes):
  ``poll`` on the descriptor can't see them, so a reader must read before it
  waits while ``pending()`` isn't 0.
- ``send(data)`` encrypts all of ``data`` and returns ``len(data)`` once the
  records are out, or raises ``ssl.SSLWantWriteError`` (or
  ``SSLWantReadError``) when the outer socket can't take them all now: the
  records stay here and the caller retries with the same data (as with
  ``SSL_write``), which returns ``len(data)`` once they are out. The records
  are never written twice and the caller never loses track of them.

``wrap_tls_in_tls()`` runs the inner handshake, non-blocking, waiting on the
descriptor, bounded by the opening deadline. Certificates are checked on both
layers, each by its own context: the proxy's by ``proxy.py``'s, the server's
by the one given to ``connect()``.

Threads: the connection calls every method under its ``_lock`` (the reader
and the writer both take it for TLS); a lock of its own keeps the two
layers consistent all the same. Nothing here blocks except the handshake,
which runs in the thread calling ``connect()``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from typing import Any, cast

from ..deadline import Deadline
from ..runtime.poller import RECV_EVENTS, SEND_EVENTS, wait_for

__all__ = ["TLSInTLS", "wrap_tls", "wrap_tls_in_tls"]

# Bytes read from the outer socket at once (an outer record holds at most 16 KiB).
_OUTER_READ = 64 * 1024
_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)


def wrap_tls(
    sock: socket.socket,
    context: ssl.SSLContext,
    server_hostname: str,
    deadline: Deadline,
    what: str,
) -> ssl.SSLSocket:
    """TLS on a connected TCP socket (one layer), the handshake within ``deadline``.

    CPython counts a socket's timeout once for a whole TLS handshake, however
    many reads it takes, so one ``settimeout`` bounds it; ``what`` names the
    handshake in the ``TimeoutError``. On error the caller still owns ``sock``.
    Runs in the connecting thread.
    """
    remaining = deadline.remaining()
    if remaining == 0.0:
        raise deadline.timeout_error(what)
    sock.settimeout(remaining)
    try:
        return context.wrap_socket(sock, server_hostname=server_hostname)
    except TimeoutError as exc:
        raise deadline.timeout_error(what) from exc


def wrap_tls_in_tls(
    outer: ssl.SSLSocket,
    context: ssl.SSLContext,
    server_hostname: str,
    deadline: Deadline,
) -> TLSInTLS:
    """Run TLS with ``server_hostname`` inside ``outer``; return the non-blocking wrapper.

    ``server_hostname`` is the WebSocket server's name (SNI and the
    certificate check). Raise ``ssl.SSLError`` (``SSLCertVerificationError``...)
    when the handshake fails, ``TimeoutError`` at the deadline. On error the
    caller still owns ``outer`` and closes it. Runs in the connecting thread.
    """
    outer.setblocking(False)
    incoming = ssl.MemoryBIO()
    outgoing = ssl.MemoryBIO()
    inner = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    sock = TLSInTLS(outer, inner, incoming, outgoing)
    sock._handshake(deadline, f"the TLS handshake with {server_hostname} through the proxy")
    return sock


class TLSInTLS:
    """A TLS connection inside an ``SSLSocket``, used as a non-blocking socket."""

    __slots__ = (
        "_committed",
        "_eof",
        "_error",
        "_incoming",
        "_inner",
        "_lock",
        "_out",
        "_outer",
        "_outgoing",
    )

    def __init__(
        self,
        outer: ssl.SSLSocket,
        inner: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        self._outer = outer
        self._inner = inner
        self._incoming = incoming
        self._outgoing = outgoing
        self._lock = threading.Lock()
        # Inner records not yet taken by the outer socket; only appended to
        # while an outer send is unfinished (SSL_write's retry rule).
        self._out = bytearray()
        # Bytes of the last send() whose records are still in _out (0: none).
        self._committed = 0
        # The inner TLS reached its end: recv_into returns 0 from now on.
        self._eof = False
        # An error that came after bytes recv_into returned: raised by the next call.
        self._error: OSError | None = None

    # -- the socket methods the connection uses ---------------------------------------

    def fileno(self) -> int:
        """The outer socket's descriptor (-1 once closed): wait on it for both layers."""
        return self._outer.fileno()

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Decrypt what both layers hold or the descriptor has now into ``buffer``.

        Return the number of bytes (0 at EOF); raise ``ssl.SSLWantReadError``
        when nothing can be decrypted without waiting for the descriptor.
        """
        if flags:
            raise ValueError("recv_into() flags are not supported inside TLS")
        with self._lock, memoryview(buffer) as whole:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            size = nbytes or len(whole)
            total = 0
            while total < size and not self._eof:
                try:
                    try:
                        with whole[total:size] as rest:
                            # With a buffer, read() returns a count (typeshed says bytes).
                            got = cast(int, self._inner.read(size - total, rest))
                    except ssl.SSLWantReadError:
                        if self._fill():
                            continue
                        break
                except ssl.SSLZeroReturnError:  # the server's close_notify
                    self._eof = True
                    break
                except OSError as exc:
                    if isinstance(exc, ssl.SSLEOFError) and self._incoming.eof:
                        self._eof = True  # TCP ended without close_notify: EOF all the same
                        break
                    if not total:
                        raise
                    self._error = exc  # after the bytes decrypted before it
                    break
                if not got:
                    self._eof = True
                    break
                total += got
            try:
                # Reading may have produced records to send (a TLS 1.3 key update's answer).
                self._flush_quietly()
            except OSError as exc:
                if not total:
                    raise
                self._error = exc
            if total or self._eof:
                return total
            raise ssl.SSLWantReadError("the read would block")

    def send(self, data: Any, flags: int = 0) -> int:
        """Encrypt all of ``data`` and send its records; ``len(data)`` once they are out.

        When the outer socket can't take them all, raise ``SSLWantWriteError``
        (or ``SSLWantReadError``) and keep them: retry with the same data.
        """
        if flags:
            raise ValueError("send() flags are not supported inside TLS")
        with self._lock:
            if self._committed:
                # A retry: the records of the last call are still going out.
                self._send_out()
                taken, self._committed = self._committed, 0
                return taken
            if self._out:
                self._send_out()  # records a read produced: first in line
            if not len(data):
                return 0
            self._committed = self._inner.write(data)  # a MemoryBIO takes everything
            self._send_out()
            taken, self._committed = self._committed, 0
            return taken

    def pending(self) -> int:
        """Bytes held in user space, decrypted or not, that ``poll`` can't see."""
        with self._lock:
            if self._eof:
                return 0
            return self._inner.pending() + self._incoming.pending + self._outer.pending()

    def shutdown(self, how: int) -> None:
        """Shut the TCP connection down (no close_notify, as ``SSLSocket.shutdown``).

        The outer TLS stays usable for reading: the peer's last records and
        EOF still arrive through it.
        """
        with self._lock:
            socket.socket.shutdown(self._outer, how)

    def close(self) -> None:
        """Close the outer socket, and with it the descriptor."""
        with self._lock:
            self._outer.close()

    def getpeername(self) -> Any:
        """The proxy's address: the TCP peer."""
        return self._outer.getpeername()

    def getsockname(self) -> Any:
        return self._outer.getsockname()

    def setblocking(self, flag: bool) -> None:
        """Only non-blocking use is supported: ``setblocking(False)``."""
        if flag:
            raise ValueError("TLS inside TLS is non-blocking only")

    @property
    def family(self) -> socket.AddressFamily:
        return self._outer.family

    # -- what an SSLSocket tells about its TLS: the inner one's, the server's ----------

    def getpeercert(self, binary_form: bool = False) -> Any:
        """The WebSocket server's certificate (not the proxy's)."""
        return self._inner.getpeercert(binary_form)

    def cipher(self) -> tuple[str, str, int] | None:
        return self._inner.cipher()

    def version(self) -> str | None:
        return self._inner.version()

    def selected_alpn_protocol(self) -> str | None:
        return self._inner.selected_alpn_protocol()

    @property
    def server_hostname(self) -> str | None:
        return self._inner.server_hostname

    @property
    def proxy_socket(self) -> ssl.SSLSocket:
        """The TLS socket to the proxy, which carries this connection."""
        return self._outer

    def __repr__(self) -> str:
        return f"<TLSInTLS fd={self.fileno()} server_hostname={self.server_hostname!r}>"

    # -- moving records between the layers (own lock held) ------------------------------

    def _fill(self) -> bool:
        """Move what the outer socket has into the inner layer; False if it has nothing now."""
        if self._incoming.eof:
            return False
        try:
            data = self._outer.recv(_OUTER_READ)
        except _WOULD_BLOCK:
            return False
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()
        return True

    def _send_out(self) -> None:
        """Write the pending inner records to the outer socket; raise if they don't all go.

        Each attempt passes all of ``_out``, whose front is unchanged since the
        last unfinished attempt: the outer ``SSL_write`` resumes where it stopped.
        """
        if self._outgoing.pending:
            self._out += self._outgoing.read()
        while self._out:
            with memoryview(self._out) as view:
                sent = self._outer.send(view)
            del self._out[:sent]

    def _flush_quietly(self) -> None:
        """Send what reading produced, if the socket takes it now; else at the next send."""
        if self._outgoing.pending or self._out:
            with contextlib.suppress(*_WOULD_BLOCK):
                self._send_out()

    def _handshake(self, deadline: Deadline, what: str) -> None:
        """The inner handshake, waiting on the descriptor, bounded by ``deadline``."""
        while True:
            try:
                self._inner.do_handshake()
            except ssl.SSLWantReadError:
                self._flush_all(deadline, what)
                while not self._fill():
                    self._wait(RECV_EVENTS, deadline, what)
                continue
            break
        self._flush_all(deadline, what)  # our last flight

    def _flush_all(self, deadline: Deadline, what: str) -> None:
        while True:
            try:
                self._send_out()
            except ssl.SSLWantReadError:
                self._wait(RECV_EVENTS, deadline, what)
            except (ssl.SSLWantWriteError, BlockingIOError):
                self._wait(SEND_EVENTS, deadline, what)
            else:
                return

    def _wait(self, events: int, deadline: Deadline, what: str) -> None:
        if deadline.expired():
            raise deadline.timeout_error(what)
        wait_for(self._outer, events, deadline)
