"""websocket-client's spellings, translated for ``WebSocketApp``: run_forever() keywords, sslopt.

Plain functions, no I/O and no threads: ``run_forever()`` calls
``connect_options()`` in its own thread before connecting, so a keyword
syncws can't honour raises at the call (``TypeError`` for an unknown name,
``ValueError`` for a known one we don't support, saying what to use), never
later in ``on_error``. Also ``ABNF``'s opcode numbers and ``enableTrace()``.
"""

from __future__ import annotations

import logging
import ssl as ssl_module
import sys
from collections.abc import Mapping
from typing import Any, TextIO
from urllib.parse import quote

__all__ = ["ABNF", "connect_options", "enableTrace", "ssl_context"]


class ABNF:
    """websocket-client's opcode numbers (``ABNF.OPCODE_TEXT``...), for ``send(data, opcode)``."""

    OPCODE_CONT = 0x0
    OPCODE_TEXT = 0x1
    OPCODE_BINARY = 0x2
    OPCODE_CLOSE = 0x8
    OPCODE_PING = 0x9
    OPCODE_PONG = 0xA


# The options of connect() that run_forever() passes on as they are.
_CONNECT_OPTIONS = frozenset(
    {
        "sock",
        "ssl",
        "server_hostname",
        "origin",
        "user_agent_header",
        "compression",
        "extensions",
        "open_timeout",
        "max_size",
        "max_queue",
        "write_limit",
        "close_timeout",
        "max_redirects",
        "proxy",
        "logger",
        "unix_path",
    }
)

# websocket-client keywords syncws doesn't support, with what to do instead.
# Their default values (None, False, 0, "", empty) are accepted and ignored.
_UNSUPPORTED = {
    "ping_payload": "keepalive pings carry 4 random bytes; send your own with app.sock.ping(data)",
    "sockopt": "make and connect the socket yourself and pass it as WebSocketApp(socket=sock)",
    "skip_utf8_validation": "text messages are always checked (1007 when invalid)",
    "host": "the Host header comes from the URL",
    "suppress_host": "the Host header comes from the URL and is always sent",
    "http_no_proxy": "pass proxy=None to connect directly, or set NO_PROXY",
    "http_proxy_timeout": "open_timeout= bounds the proxy and the handshake together",
}

# Keywords that run_forever() sets itself from the app's attributes.
_SET_BY_APP = {
    "additional_headers": "header=",
    "subprotocols": "subprotocols=",
    "create_connection": "nothing: the app needs its own connection class",
}

_PROXY_TYPES = ("http", "socks4", "socks4a", "socks5", "socks5h")


def connect_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Translate ``run_forever()``'s keywords into ``connect()``'s; raise for what can't be.

    Handles websocket-client's ``sslopt``, ``http_proxy_*``, ``proxy_type``
    and ``suppress_origin``, and syncws's own ``connect()`` options.
    """
    result: dict[str, Any] = {}
    proxy: dict[str, Any] = {}
    suppress_origin = False
    for name, value in options.items():
        if name in _CONNECT_OPTIONS:
            result[name] = value
        elif name in _UNSUPPORTED:
            if value:
                raise ValueError(f"run_forever({name}=...) isn't supported: {_UNSUPPORTED[name]}")
        elif name in _SET_BY_APP:
            raise TypeError(f"run_forever() doesn't take {name}=: use {_SET_BY_APP[name]}")
        elif name == "sslopt":
            if value:
                result.update(ssl_context(value))
        elif name in ("http_proxy_host", "http_proxy_port", "http_proxy_auth", "proxy_type"):
            if value is not None:
                proxy[name] = value
        elif name == "suppress_origin":
            suppress_origin = bool(value)
        else:
            raise TypeError(f"run_forever() got an unexpected keyword argument {name!r}")
    if proxy:
        if "proxy" in result:
            raise TypeError("pass either proxy= or http_proxy_host= and friends, not both")
        result["proxy"] = _proxy_url(proxy)
    if suppress_origin:
        result.pop("origin", None)
    return result


def _proxy_url(options: dict[str, Any]) -> str:
    host = options.get("http_proxy_host")
    if host is None:
        raise ValueError("http_proxy_port=, http_proxy_auth= and proxy_type= need http_proxy_host=")
    scheme = options.get("proxy_type") or "http"
    if scheme not in _PROXY_TYPES:
        raise ValueError(f"proxy_type must be one of {', '.join(_PROXY_TYPES)}, not {scheme!r}")
    auth = options.get("http_proxy_auth")
    credentials = ""
    if auth is not None:
        user, password = auth
        credentials = f"{quote(str(user), safe='')}:{quote(str(password), safe='')}@"
    port = options.get("http_proxy_port") or 80
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{scheme}://{credentials}{host}:{int(port)}"


_SSLOPT_KEYS = frozenset(
    {
        "context",
        "cert_reqs",
        "ca_certs",
        "ca_cert_path",
        "certfile",
        "keyfile",
        "password",
        "check_hostname",
        "server_hostname",
        "ciphers",
    }
)


def ssl_context(sslopt: Mapping[str, Any]) -> dict[str, Any]:
    """Build ``ssl=`` (and ``server_hostname=``) from websocket-client's ``sslopt`` dict."""
    unknown = sorted(set(sslopt) - _SSLOPT_KEYS)
    if unknown:
        raise ValueError(
            f"sslopt key {unknown[0]!r} isn't supported: build an ssl.SSLContext and pass "
            "run_forever(ssl=context)"
        )
    result: dict[str, Any] = {}
    if sslopt.get("server_hostname") is not None:
        result["server_hostname"] = sslopt["server_hostname"]
    context = sslopt.get("context")
    if context is not None:
        if set(sslopt) - {"context", "server_hostname"}:
            raise ValueError("sslopt: give either 'context' or the other keys, not both")
        result["ssl"] = context
        return result
    context = ssl_module.create_default_context(
        cafile=sslopt.get("ca_certs"), capath=sslopt.get("ca_cert_path")
    )
    cert_reqs = sslopt.get("cert_reqs", ssl_module.CERT_REQUIRED)
    check_hostname = sslopt.get("check_hostname", cert_reqs != ssl_module.CERT_NONE)
    context.check_hostname = bool(check_hostname)  # before verify_mode: CERT_NONE needs it off
    context.verify_mode = cert_reqs
    if sslopt.get("certfile") is not None:
        context.load_cert_chain(sslopt["certfile"], sslopt.get("keyfile"), sslopt.get("password"))
    if sslopt.get("ciphers") is not None:
        context.set_ciphers(sslopt["ciphers"])
    result["ssl"] = context
    return result


_trace_handler: list[logging.Handler] = []


def enableTrace(  # noqa: N802 - websocket-client's name
    traceable: bool,
    handler: logging.Handler | None = None,
    level: str | int = "DEBUG",
    stream: TextIO | None = None,
) -> None:
    """Log every frame (without payloads) and the handshakes, as websocket-client's does.

    ``enableTrace(True)`` sets the ``syncws.frames`` and ``syncws`` loggers to
    ``level`` and adds ``handler`` (a stream handler on stderr by default);
    ``enableTrace(False)`` undoes it.
    """
    loggers = [logging.getLogger("syncws.frames"), logging.getLogger("syncws")]
    for previous in _trace_handler:
        for logger in loggers:
            logger.removeHandler(previous)
    _trace_handler.clear()
    if not traceable:
        for logger in loggers:
            logger.setLevel(logging.NOTSET)
        loggers[0].propagate = True
        return
    handler = handler or logging.StreamHandler(stream or sys.stderr)
    _trace_handler.append(handler)
    frames, main = loggers
    frames.setLevel(level)
    frames.propagate = False  # one line per frame, not one per handler up the tree
    frames.addHandler(handler)
    main.setLevel(level)
    main.addHandler(handler)
