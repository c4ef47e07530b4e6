"""``run_forever(dispatcher=rel)``: a WebSocketApp whose callbacks run in an event loop's thread.

websocket-client lets an event loop such as ``rel`` multiplex apps:
``app.run_forever(dispatcher=rel)`` returns at once, and ``rel.dispatch()``
then runs the callbacks. Here the app's loop (connecting, reading,
reconnecting) runs on a daemon thread of its own, ``syncws-WebSocketApp``,
and hands each callback to the dispatcher's thread through a socket pair the
dispatcher watches (``dispatcher.read(sock, callback)``: the interface rel and
websocket-client's dispatchers share). The callbacks keep their order and run
one at a time in the thread that runs ``dispatcher.dispatch()``.

Threads: ``post()`` and ``finish()`` from the app's loop thread; ``_ready()``
in the dispatcher's thread. The queue is thread-safe; no lock here.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

from .threaded.runtime.exiting import at_exit
from .threaded.runtime.keeper import keeper

__all__ = ["DispatcherBridge"]

_Item = tuple[Callable[..., object], tuple[Any, ...]]


class DispatcherBridge:
    """Runs ``loop`` on a thread of ours and its callbacks in ``dispatcher``'s thread."""

    def __init__(
        self,
        dispatcher: Any,
        run: Callable[[Callable[..., object], tuple[Any, ...]], None],
        on_exit: Callable[[], object],
    ) -> None:
        for name in ("read", "signal", "abort"):
            if not callable(getattr(dispatcher, name, None)):
                raise TypeError(
                    f"dispatcher has no {name}(): pass an event loop such as rel "
                    "(run_forever(dispatcher=rel)), as in websocket-client"
                )
        self._dispatcher = dispatcher
        self._run = run
        self._on_exit = on_exit
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)

    def start(self, loop: Callable[[], object]) -> None:
        """Register with the dispatcher and start ``loop`` on our thread (caller's thread)."""
        self._dispatcher.read(self._reader, self._ready)
        # As websocket-client does with a dispatcher: Ctrl-C stops the event loop.
        self._dispatcher.signal(2, self._dispatcher.abort)
        # The event loop may end (Ctrl-C) while the app still runs: close it at exit.
        # Closing needs the background thread, which can't start at exit (3.12+):
        # it is kept running until the app's loop ends.
        exit_hook = at_exit(self._on_exit)
        keeper.hold()

        def target() -> None:
            try:
                loop()
            finally:
                exit_hook.cancel()
                keeper.release()
                self._queue.put(None)
                self._wake()

        #: The app's loop thread (a daemon: the event loop's end must not wait for it).
        self.thread = threading.Thread(target=target, name="syncws-WebSocketApp", daemon=True)
        self.thread.start()

    def post(self, callback: Callable[..., object], *args: Any) -> None:
        """Have the dispatcher's thread run ``callback(*args)`` (app's loop thread)."""
        self._queue.put((callback, args))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # the pair is closed once the loop ended
            self._writer.send(b"\0")

    def _ready(self, *_: object) -> bool:
        """The dispatcher saw our socket readable: run what was posted (dispatcher's thread).

        Returns True to stay registered, False once the app's loop ended.
        """
        with contextlib.suppress(BlockingIOError):
            while self._reader.recv(4096):
                pass
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return True
            if item is None:
                self._reader.close()
                self._writer.close()
                return False
            callback, args = item
            self._run(callback, args)
