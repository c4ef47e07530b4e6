"""The process's one background I/O thread: timers and sockets nobody is reading.

Every connection of the process shares it. It runs keepalive pings, closing
deadlines and handshake timeouts, reads the sockets of connections whose
application is busy elsewhere, and flushes writes that would have blocked.

Watching is one-shot: ``watch_read(fd, callback)`` arms the descriptor once;
when it becomes readable the callback runs in the reactor thread and the
descriptor is disarmed until armed again. With ``epoll`` arming and disarming
are single system calls made by the calling thread, with no wake-up of the
reactor, so handing a socket back and forth between an application thread and
the reactor costs about a microsecond. Without epoll (macOS: ``poll``,
Windows: ``select``, see ``poller.py``) each change wakes the reactor up
through its socketpair, so that its next wait sees it.

A write watch made by the reactor thread itself, in a turn (a callback that
parsed a ping and queued the pong, say), doesn't wait for ``epoll``: its
callback runs at the end of that turn, after the other callbacks, as the
socket can most likely take a few bytes. So a reply leaves in the turn that
produced it, with no system call to arm the watch and no extra turn (each of
which would wait for the GIL again on a busy process). A callback that finds
the socket full watches it again, and that watch goes to the poller. What the
turn's callbacks arm (a read watch handed back after a read) reaches the
poller after those writes: each ``epoll_ctl`` lets go of the GIL, and the
reply shouldn't wait behind it. The reads themselves keep the GIL (see
``heldio.py``): a ping parsed by this thread costs one wait for the GIL,
when ``epoll_wait`` returns.

The thread starts on first use and exits as soon as it has nothing left to
watch or time (one tick later if a ``recv()`` just returned: its thread is
likely to come back), so an idle process has no extra thread, and a script that
forgets to close a connection still exits (the thread is a daemon too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable

from .heldio import RecvBuffer, recv_into, send_small
from .poller import READABLE, WRITABLE, Poller, make_poller

__all__ = ["BackgroundStats", "Reactor", "Timer", "background_stats", "reactor"]

logger = logging.getLogger("syncws")

Callback = Callable[[], None]

_READ = READABLE
_WRITE = WRITABLE


def _nothing() -> None:
    """What a cancelled timer calls: nothing (it never runs)."""


class Timer:
    """A callback scheduled in the reactor; ``cancel()`` it if it is no longer needed."""

    __slots__ = ("_reactor", "callback", "cancelled", "when")

    def __init__(self, reactor: Reactor, when: float, callback: Callback) -> None:
        self._reactor = reactor
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the callback from running; safe from any thread, idempotent."""
        self._reactor._cancel(self)


#: Seconds before a ``watch_read_later`` watch is armed.
LATER_DELAY = 0.02

#: A turn that takes longer, or a timer that fires later, than this many
#: seconds is logged at WARNING (at most once per ``LAG_WARNING_INTERVAL``).
LAG_WARNING = 0.5
LAG_WARNING_INTERVAL = 60.0
# ``peak_lag`` covers the current and the previous window of this many seconds.
_PEAK_WINDOW = 30.0


@dataclasses.dataclass(frozen=True)
class BackgroundStats:
    """How far behind the background thread is: read it for a health check or ``/metrics``.

    Every figure is in seconds. A healthy process shows milliseconds at most;
    a growing ``lag`` means the thread is stuck in one turn, and every
    connection's pings, keepalive and closing deadlines wait meanwhile.
    """

    #: True while the thread exists (it starts with the first connection).
    running: bool
    #: How long the turn in progress has lasted so far; 0 while the thread waits.
    lag: float
    #: How late the last timer (keepalive, closing deadline) fired.
    timer_lag: float
    #: How long the last finished turn took (a turn runs what became ready at once).
    last_turn: float
    #: The largest of the above over the last 30 to 60 seconds.
    peak_lag: float
    #: Turns run since the process started.
    turns: int
    #: Sockets watched and timers scheduled at the moment.
    sockets: int
    timers: int


class Reactor:
    """Timers and one-shot socket watches served by one lazily started thread.

    Every method is safe to call from any thread, including from callbacks
    running in the reactor thread. Callbacks must not block: they run one
    after the other in the same thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._poller: Poller | None = None
        self._waker: tuple[socket.socket, socket.socket] | None = None
        # Where the reactor drains its waker: with the GIL kept (heldio.py), so
        # that a wake-up costs no second wait for the GIL in the turn.
        self._waker_buffer = RecvBuffer(4096)
        self._wakeup_pending = False
        self._timers: list[tuple[float, int, Timer]] = []
        self._live_timers = 0
        self._sequence = itertools.count()
        # fd -> (events armed, read callback, write callback)
        self._watches: dict[int, tuple[int, Callback | None, Callback | None]] = {}
        self._soon: list[Callback] = []
        self._next_deadline: float | None = None
        # Read watches to arm at the next tick (watch_read_later), and that tick;
        # True: run the callback then, without waiting for the descriptor.
        self._later: dict[int, tuple[Callback, bool]] = {}
        self._later_timer: Timer | None = None
        # Lag accounting: written by the reactor thread only, read by stats().
        self._turn_started: float | None = None
        self._turns = 0
        self._last_turn = 0.0
        self._timer_lag = 0.0
        self._peak = 0.0
        self._previous_peak = 0.0
        self._window_start = time.monotonic()
        self._last_warning: float | None = None
        # A watch_read_later came since the thread last found nothing to do:
        # it stays one more tick, as a reader in a recv() loop will be back.
        self._later_used = False
        # Reactor thread only: while its turn runs callbacks, its own write
        # watches, run at the end of the turn (None between turns).
        self._turn_writes: dict[int, Callback] | None = None
        # Reactor thread only: the descriptors its callbacks (re)armed in this turn,
        # armed in the poller after the turn's writes (None between turns).
        self._turn_arms: set[int] | None = None
        self._ident: int | None = None

    # -- public API --------------------------------------------------------------

    def call_later(self, delay: float, callback: Callback) -> Timer:
        """Run ``callback`` in the reactor thread after ``delay`` seconds."""
        with self._lock:
            return self._call_later_locked(delay, callback)

    def _call_later_locked(self, delay: float, callback: Callback) -> Timer:
        timer = Timer(self, time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._sequence), timer))
        self._live_timers += 1
        self._ensure_running()
        if self._next_deadline is None or timer.when < self._next_deadline:
            self._wakeup()
        return timer

    def call_soon(self, callback: Callback) -> None:
        """Run ``callback`` in the reactor thread as soon as possible."""
        with self._lock:
            self._soon.append(callback)
            self._ensure_running()
            self._wakeup()

    def watch_read(self, fd: int, callback: Callback) -> None:
        """Run ``callback`` once, in the reactor thread, when ``fd`` becomes readable."""
        self._watch(fd, callback, None)

    def watch_read_later(self, fd: int, callback: Callback, *, pending: bool = False) -> None:
        """Like ``watch_read``, armed only at the next tick (``LATER_DELAY`` at most).

        For a socket whose reader is likely to come back at once (a thread
        between two ``recv()`` calls): if ``unwatch_read`` comes first, the
        watch costs no system call at all. Bytes that arrive meanwhile wait
        in the kernel for one tick. ``pending``: data waits outside the
        descriptor (parsed later from a buffer): at the tick, run ``callback``
        without waiting for the descriptor to become readable.
        """
        with self._lock:
            self._later[fd] = (callback, pending)
            self._later_used = True
            if self._later_timer is None:
                self._later_timer = self._call_later_locked(LATER_DELAY, self._arm_later)

    def watch_write(self, fd: int, callback: Callback) -> None:
        """Run ``callback`` once, in the reactor thread, when ``fd`` becomes writable.

        From the reactor thread during a turn: at the end of that turn,
        without asking the poller (see the module's docstring); ``callback``
        must cope with a socket that can't take anything yet.
        """
        writes = self._turn_writes
        if writes is not None and threading.get_ident() == self._ident:
            writes[fd] = callback
            return
        self._watch(fd, None, callback)

    def unwatch_read(self, fd: int) -> None:
        """Disarm the read watch of ``fd``; its callback may still run once if it already fired."""
        with self._lock:
            if self._later.pop(fd, None) is not None:
                return
            entry = self._watches.get(fd)
            if entry is None or entry[1] is None:
                return
            events, _, on_write = entry
            if on_write is None:
                del self._watches[fd]
                assert self._poller is not None
                self._poller.forget(fd)
            else:
                self._watches[fd] = (events & ~_READ | _WRITE, None, on_write)
                self._arm(fd, _WRITE)

    def forget(self, fd: int) -> None:
        """Drop every watch on ``fd``; call it before closing the descriptor."""
        with self._lock:
            self._watches.pop(fd, None)
            self._later.pop(fd, None)
            if self._poller is not None:
                self._poller.forget(fd)
                self._maybe_wake_idle()

    def thread_running(self) -> bool:
        """True while the reactor thread exists (it exits when idle)."""
        with self._lock:
            return self._thread is not None

    def stats(self) -> BackgroundStats:
        """How far behind the thread is now and lately; see ``BackgroundStats``. Any thread."""
        now = time.monotonic()
        started = self._turn_started
        lag = 0.0 if started is None else max(0.0, now - started)
        if now - self._window_start >= 2 * _PEAK_WINDOW:
            peak = 0.0  # nothing ran for a whole minute
        elif now - self._window_start >= _PEAK_WINDOW:
            peak = self._peak
        else:
            peak = max(self._peak, self._previous_peak)
        with self._lock:
            running = self._thread is not None
            sockets = len(self._watches) + len(self._later)
            timers = self._live_timers
        return BackgroundStats(
            running=running,
            lag=lag,
            timer_lag=self._timer_lag,
            last_turn=self._last_turn,
            peak_lag=max(peak, lag),
            turns=self._turns,
            sockets=sockets,
            timers=timers,
        )

    # -- internals ---------------------------------------------------------------

    def _watch(self, fd: int, on_read: Callback | None, on_write: Callback | None) -> None:
        with self._lock:
            self._watch_locked(fd, on_read, on_write)

    def _watch_locked(self, fd: int, on_read: Callback | None, on_write: Callback | None) -> None:
        if on_read is not None:
            self._later.pop(fd, None)
        events, old_read, old_write = self._watches.get(fd, (0, None, None))
        on_read = on_read or old_read
        on_write = on_write or old_write
        events = (_READ if on_read else 0) | (_WRITE if on_write else 0)
        self._watches[fd] = (events, on_read, on_write)
        self._ensure_running()
        self._arm(fd, events)

    def _arm_later(self) -> None:
        """Reactor thread, at the tick: arm the read watches still waiting."""
        with self._lock:
            self._later_timer = None
            later, self._later = self._later, {}
            for fd, (callback, pending) in later.items():
                if pending:
                    self._soon.append(callback)  # the next turn, after those ready now
                else:
                    self._watch_locked(fd, callback, None)

    def _arm(self, fd: int, events: int) -> None:
        arms = self._turn_arms
        if arms is not None and threading.get_ident() == self._ident:
            # After the turn's writes: epoll_ctl lets go of the GIL, and a
            # pong parsed in this turn shouldn't wait for the GIL behind it.
            arms.add(fd)
            return
        assert self._poller is not None
        self._poller.arm(fd, events)
        # poll, select: another thread's change is seen at the reactor's next call
        # only; the reactor itself (callbacks, watch_read_later) makes its next call.
        if self._poller.needs_wakeup and (
            self._thread is None or self._thread.ident != threading.get_ident()
        ):
            self._wakeup()

    def _cancel(self, timer: Timer) -> None:
        with self._lock:
            if timer.cancelled:
                return
            timer.cancelled = True
            # It stays in the heap until it is due: let go of what it would call.
            timer.callback = _nothing
            self._live_timers -= 1
            self._maybe_wake_idle()

    def _maybe_wake_idle(self) -> None:
        # Called with the lock held: let an idle reactor notice it can exit.
        if self._thread is not None and self._idle():
            self._wakeup()

    def _idle(self) -> bool:
        """Nothing to watch and no timer but, maybe, a tick with nothing left to arm (lock held)."""
        if self._watches:
            return False
        return not self._live_timers or (
            self._live_timers == 1 and self._later_timer is not None and not self._later
        )

    def _wakeup(self) -> None:
        # Called with the lock held.
        if self._waker is not None and not self._wakeup_pending:
            self._wakeup_pending = True
            with contextlib.suppress(OSError):
                # The GIL kept (heldio.py): the reactor's lock is held here.
                send_small(self._waker[1], b"\0")

    def _ensure_running(self) -> None:
        # Called with the lock held.
        if self._thread is not None:
            return
        self._poller = make_poller()
        self._waker = socket.socketpair()
        for end in self._waker:
            end.setblocking(False)
        self._poller.arm(self._waker[0].fileno(), _READ)
        self._wakeup_pending = False
        thread = threading.Thread(target=self._run, name="syncws-reactor", daemon=True)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        self._ident = threading.get_ident()
        while True:
            with self._lock:
                timeout = self._prepare_wait()
                if timeout == -1.0:
                    self._shut_down()
                    return
                poller = self._poller
                assert poller is not None
            ready = poller.wait(timeout)
            self._dispatch(ready)

    def _prepare_wait(self) -> float | None:
        """Return how long to wait, or -1.0 when there is nothing left to do (lock held)."""
        if self._soon:
            return 0.0
        if self._later_timer is not None and not self._later and self._idle():
            # The deferred watches were all taken back: the tick has nothing to do.
            timer, self._later_timer = self._later_timer, None
            timer.cancelled = True
            timer.callback = _nothing
            self._live_timers -= 1
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers and not self._watches:
            if self._later_used:
                # A connection goes in and out of recv(): stay one more tick
                # instead of exiting and starting a thread again (about 25
                # system calls) at its next message. A deferred watch made
                # meanwhile is due after this wait ends: no wake-up for it.
                self._later_used = False
                self._next_deadline = time.monotonic() + LATER_DELAY
                return LATER_DELAY
            return -1.0
        if self._timers:
            self._next_deadline = self._timers[0][0]
            return max(0.0, self._next_deadline - time.monotonic())
        self._next_deadline = None
        return None

    def _shut_down(self) -> None:
        # Called with the lock held, by the reactor thread itself.
        assert self._poller is not None and self._waker is not None
        self._poller.close()
        for end in self._waker:
            end.close()
        self._poller = None
        self._waker = None
        self._thread = None
        self._next_deadline = None

    def _dispatch(self, ready: list[tuple[int, int]]) -> None:
        callbacks: list[Callback] = []
        due: list[tuple[float, Callback]] = []
        with self._lock:
            assert self._waker is not None and self._poller is not None
            waker_fd = self._waker[0].fileno()
            for fd, events in ready:
                if fd == waker_fd:
                    with contextlib.suppress(OSError):
                        recv_into(self._waker[0], waker_fd, self._waker_buffer, True)
                    self._wakeup_pending = False
                    self._poller.arm(waker_fd, _READ)
                    continue
                self._poller.fired(fd)
                entry = self._watches.get(fd)
                if entry is None:
                    continue
                _, on_read, on_write = entry
                fired_read = on_read is not None and events & _READ
                fired_write = on_write is not None and events & _WRITE
                keep_read = None if fired_read else on_read
                keep_write = None if fired_write else on_write
                if fired_read:
                    assert on_read is not None
                    callbacks.append(on_read)
                if fired_write:
                    assert on_write is not None
                    callbacks.append(on_write)
                if keep_read is None and keep_write is None:
                    del self._watches[fd]
                else:
                    rest = (_READ if keep_read else 0) | (_WRITE if keep_write else 0)
                    self._watches[fd] = (rest, keep_read, keep_write)
                    self._poller.arm(fd, rest)
            callbacks.extend(self._soon)
            self._soon.clear()
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, timer = heapq.heappop(self._timers)
                if not timer.cancelled:
                    timer.cancelled = True
                    self._live_timers -= 1
                    due.append((timer.when, timer.callback))
        started = self._turn_started = time.monotonic()
        timer_lag = 0.0
        writes: dict[int, Callback] = {}
        arms: set[int] = set()
        self._turn_writes = writes
        self._turn_arms = arms
        try:
            try:
                for callback in callbacks:
                    _run_callback(callback)
                for when, callback in due:
                    timer_lag = max(timer_lag, time.monotonic() - when)
                    _run_callback(callback)
            finally:
                self._turn_writes = None
            # The replies of this turn, now; a socket still full is watched for real.
            for callback in writes.values():
                _run_callback(callback)
        finally:
            self._turn_arms = None
            if arms:
                self._arm_after_turn(arms)
        self._account(started, timer_lag if due else None)

    def _arm_after_turn(self, arms: set[int]) -> None:
        """Reactor thread: arm what the turn's callbacks watched, as the watches stand now."""
        with self._lock:
            poller = self._poller
            assert poller is not None
            for fd in arms:
                entry = self._watches.get(fd)
                if entry is not None:  # else unwatched or forgotten meanwhile
                    poller.arm(fd, entry[0])

    def _account(self, started: float, timer_lag: float | None) -> None:
        """Reactor thread, after a turn: update the lag figures; warn past LAG_WARNING."""
        now = time.monotonic()
        turn = now - started
        self._turn_started = None
        self._turns += 1
        self._last_turn = turn
        if timer_lag is not None:
            self._timer_lag = timer_lag
        worst = max(turn, timer_lag or 0.0)
        if now - self._window_start >= _PEAK_WINDOW:
            recent = now - self._window_start < 2 * _PEAK_WINDOW
            self._previous_peak = self._peak if recent else 0.0
            self._peak = 0.0
            self._window_start = now
        self._peak = max(self._peak, worst)
        if worst > LAG_WARNING and (
            self._last_warning is None or now - self._last_warning >= LAG_WARNING_INTERVAL
        ):
            self._last_warning = now
            logger.warning(
                "background thread: a turn took %.3fs, timers fired %.3fs late "
                "(every connection's pings and timers wait meanwhile)",
                turn,
                timer_lag or 0.0,
            )


def _run_callback(callback: Callback) -> None:
    try:
        callback()
    except Exception:
        logger.exception("unexpected error in a syncws background callback")


#: The reactor of this process.
reactor = Reactor()


def background_stats() -> BackgroundStats:
    """How far behind syncws's background thread is; see ``BackgroundStats``. Any thread."""
    return reactor.stats()
