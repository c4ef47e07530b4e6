"""``python -m syncws URI``: an interactive client for trying out a WebSocket server.

Lines you type are sent as text messages; incoming messages are printed as
they arrive, while you type. Commands: ``/binary HEX`` sends binary,
``/ping [TEXT]`` pings and prints the round trip, ``/close [CODE [REASON]]``
closes, ``/help``; start a line with ``//`` to send it beginning with ``/``.
Ctrl-D closes the connection and exits; so does Ctrl-C.

Threads: the main thread reads typed lines and sends; a ``syncws-cli`` thread
prints incoming messages. ``Console`` serializes what both print, and redraws
the prompt only while the main thread is waiting at it.

When the server closes, the ``syncws-cli`` thread wakes the main thread from
its blocking read with a signal of its own (``SIGUSR1``, whose handler raises
``Woken`` in the main thread, installed for the session only), never SIGINT:
under ``nohup`` or ``cmd &`` SIGINT is ignored and would wake nothing, and
Ctrl-C stays the user's. Where there is no ``pthread_kill`` (Windows), the
next Enter ends the read.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from ..exceptions import ConnectionClosed, ConnectionClosedOK, WebSocketError
from ..threaded.client import ClientConnection, connect

__all__ = ["run_client"]

CLOSE_USAGE = "/close takes a close code and a reason, like /close 1000 bye (or /close alone)"

HELP = """\
commands: /binary HEX   send a binary message (hex digits)
          /ping [TEXT]  ping the server and show the round trip
          /close [CODE [REASON]]  close the connection (1000 by default)
          /help         show this
          //...         send a text message that starts with /
Ctrl-D or Ctrl-C closes the connection and exits."""


class Console:
    """Prints incoming messages without trampling the line being typed."""

    def __init__(self, output: TextIO) -> None:
        self.output = output
        self.interactive = output.isatty()
        self.prompt = "> " if self.interactive else ""
        self._lock = threading.Lock()
        # True while the main thread waits at the prompt: only then is it on screen.
        self._reading = False
        try:
            import readline  # noqa: PLC0415 - optional: not on every platform
        except ImportError:  # pragma: no cover
            self._readline: Any = None
        else:
            self._readline = readline

    def show(self, line: str) -> None:
        """Print a line (any thread)."""
        with self._lock:
            if self.interactive:
                # Erase the prompt line, print, then redraw the prompt and what
                # was typed if the prompt is waiting (input() draws it otherwise).
                redraw = ""
                if self._reading:
                    typed = self._readline.get_line_buffer() if self._readline else ""
                    redraw = self.prompt + typed
                self.output.write(f"\r\x1b[K{line}\n{redraw}")
            else:
                self.output.write(line + "\n")
            self.output.flush()

    def reading(self, waiting: bool) -> None:
        """Say that the main thread starts or stops waiting at the prompt."""
        with self._lock:
            self._reading = waiting


def describe(message: str | bytes) -> str:
    if isinstance(message, str):
        return f"< {message}"
    return f"< (binary, {len(message)} bytes) {message.hex(' ')}"


#: The signal that wakes the main thread's read (None where there is none).
WAKE_SIGNAL: signal.Signals | None = getattr(signal, "SIGUSR1", None)


class Woken(Exception):
    """Raised in the main thread, in its read, once the server ended the session."""


def _raise_woken(signum: int, frame: object) -> None:
    raise Woken


class Prompt:
    """Reads typed lines; the reader thread may interrupt a wait once the server closed."""

    def __init__(self, console: Console, input_stream: TextIO) -> None:
        self.console = console
        self.input_stream = input_stream
        self._lock = threading.Lock()
        self._waiting = False
        # Only a blocking read (a terminal, a pipe) in the main thread needs a
        # signal; where there is no pthread_kill (Windows), the next Enter ends it.
        self._interruptible = (
            hasattr(signal, "pthread_kill")
            and WAKE_SIGNAL is not None
            and _has_fileno(input_stream)
            and threading.current_thread() is threading.main_thread()
        )

    @contextlib.contextmanager
    def wakeable(self) -> Iterator[None]:
        """Install the wake-up signal's handler for the block (main thread)."""
        if not self._interruptible or WAKE_SIGNAL is None:
            yield
            return
        previous = signal.signal(WAKE_SIGNAL, _raise_woken)
        try:
            yield
        finally:
            with self._lock:
                self._interruptible = False  # no signal once the handler is gone
            signal.signal(WAKE_SIGNAL, previous)

    def read(self) -> str:
        """The next line, without its newline; ``EOFError`` at the end of input."""
        with self._lock:
            self._waiting = True
        try:
            if self.console.interactive:
                self.console.reading(True)
                try:
                    return input(self.console.prompt)
                finally:
                    self.console.reading(False)
            line = self.input_stream.readline()
            if not line:
                raise EOFError
            return line.rstrip("\n")
        finally:
            with self._lock:
                self._waiting = False

    def interrupt(self) -> None:
        """Wake the main thread up from its wait for input (any thread)."""
        with self._lock:
            if self._waiting and self._interruptible and WAKE_SIGNAL is not None:
                signal.pthread_kill(threading.main_thread().ident or 0, WAKE_SIGNAL)


def receive(
    connection: ClientConnection, console: Console, prompt: Prompt, done: threading.Event
) -> None:
    """Print messages until the connection closes, then stop the prompt."""
    try:
        for message in connection:
            console.show(describe(message))
    except ConnectionClosed:
        pass
    done.set()
    prompt.interrupt()


def run_client(
    uri: str,
    *,
    input_stream: TextIO | None = None,
    first_messages: Sequence[str] = (),
    **options: Any,
) -> int:
    """Run the interactive client, reading ``input_stream`` (stdin); return the exit status.

    ``first_messages`` are sent as text, in order, as soon as the connection
    is open (``--text``); ``options`` go to ``connect()``.
    """
    console = Console(sys.stdout)
    if input_stream is None:
        input_stream = sys.stdin
    try:
        connection = connect(uri, **options)
    except (OSError, TimeoutError, ValueError, WebSocketError) as exc:
        print(f"couldn't connect to {uri}: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    prompt = Prompt(console, input_stream)
    reader = threading.Thread(
        target=receive, args=(connection, console, prompt, done), name="syncws-cli", daemon=True
    )
    ended_here = True  # False when the server or the network ended the session
    with prompt.wakeable():
        try:
            # Inside the try: Ctrl-C may come as soon as this line is printed.
            console.show(f"connected to {uri} (/help for commands, Ctrl-D to quit)")
            reader.start()
            for text in first_messages:
                connection.send(text)
            while not done.is_set():
                if not command(connection, console, prompt.read()):
                    break
            else:
                ended_here = False
        except (EOFError, KeyboardInterrupt, Woken):
            ended_here = not done.is_set()
        except ConnectionClosed:
            ended_here = False
        finally:
            connection.close()
            if reader.is_alive():
                reader.join(5)
    console.show(f"connection closed: {connection.close_code} {connection.close_reason}".rstrip())
    if ended_here or isinstance(connection.protocol.close_exc(), ConnectionClosedOK):
        return 0
    return 1


def command(connection: ClientConnection, console: Console, line: str) -> bool:
    """Act on one typed line; False once the connection was closed on request."""
    if not line.startswith("/") or line.startswith("//"):
        connection.send(line[1:] if line.startswith("//") else line)
        return True
    name, _, rest = line[1:].partition(" ")
    if name == "binary":
        try:
            data = bytes.fromhex(rest)
        except ValueError:
            console.show("! /binary takes hex digits, like /binary 00ff10")
            return True
        connection.send(data)
    elif name == "ping":
        pending = connection.ping(rest or None)
        with contextlib.suppress(TimeoutError):
            console.show(f"pong after {pending.round_trip(10) * 1000:.2f} ms")
    elif name == "close":
        code, _, reason = rest.strip().partition(" ")
        if code and not (code.isascii() and code.isdigit()):
            console.show(f"! {CLOSE_USAGE}")
            return True
        try:
            connection.close(int(code) if code else 1000, reason)
        except ValueError as exc:  # a code that can't be sent, a reason too long: it says which
            console.show(f"! {exc}")
            return True
        return False
    elif name == "help":
        console.show(HELP)
    else:
        console.show(f"! unknown command /{name}; /help lists them")
    return True


def _has_fileno(stream: TextIO) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError):
        return False
    return True
