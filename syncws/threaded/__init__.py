"""The threaded I/O layer: blocking sockets, a thread per handler, one background thread.

Grouped in rooms, each importing only from those listed before it:
the shared small modules here (``deadline``, ``options``, ``origins``,
``backoff``); ``runtime/`` (the background thread, the callbacks thread,
pollers, OS shims); ``net/`` (DNS, proxies, TLS inside TLS);
``connection/`` (one connection: its core and its parts); ``server/`` and
``client/`` (accepting and opening connections). See docs/architecture.rst.
"""
