"""Reaching a server: name lookups, proxies, TLS inside TLS.

``dns.py`` (lookups within ``open_timeout``), ``proxy.py`` (HTTP(S) and
SOCKS proxies), ``socks.py`` (the SOCKS4/4a/5 exchanges, within the deadline)
and ``tls_in_tls.py`` (``wss://`` through an ``https://``
proxy). Imports only from the shared modules and ``runtime``.
"""
