"""The sans-I/O WebSocket protocol core: bytes in, events and bytes out.

Nothing in this package touches a socket, a thread or a clock.
"""
