"""The process's runtime: the background thread, the callbacks thread, pollers, OS shims.

``reactor.py`` (the background thread: timers, socket watches), ``worker.py``
(the callbacks thread), ``poller.py`` (waiting for one socket; the reactor's
pollers), ``gather.py`` (writing many chunks in one call) and ``errcodes.py``
(socket error numbers). Nothing here knows about WebSocket connections; the
rooms above import from here, never the reverse.
"""
