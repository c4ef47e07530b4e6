"""Reaching a server: name lookups, proxies, TLS inside TLS.

``dns.py`` (lookups within ``open_timeout``), ``proxy.py`` (HTTP(S) and
SOCKS proxies) and ``tls_in_tls.py`` (``wss://`` through an ``https://``
proxy). Imports only from the shared modules and ``runtime``.
"""
