"""The ``syncws`` command: ``syncws URI`` (interactive client) and ``syncws serve``."""

from __future__ import annotations

import argparse
import errno
import ssl
import sys
from collections.abc import Sequence
from typing import Any

from ..version import __version__

__all__ = ["main"]

USAGE = """\
syncws URI [options]          talk to a WebSocket server interactively
syncws serve [--demo] [...]   run an echo server, or the demo chat with its web page
syncws --version              print the version"""
VERSION = f"syncws {__version__}"
#: Where ``syncws serve`` listens unless ``--host`` says otherwise: loopback,
#: so that the demo chat isn't reachable from the network by surprise.
DEFAULT_HOST = "127.0.0.1"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m syncws`` and of the ``syncws`` script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        return _serve(args[1:])
    return _client(args)


def _serve(args: list[str]) -> int:
    from .serve import run_server  # noqa: PLC0415 - import what the command needs

    parser = argparse.ArgumentParser(
        prog="syncws serve", description="Run an echo server, or the demo chat with --demo."
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"interface to listen on (default {DEFAULT_HOST}: this machine only; "
        "--host 0.0.0.0 shares it with the network, IPv4, --host :: IPv6 too)",
    )
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any)")
    parser.add_argument("--demo", action="store_true", help="the demo chat and its web page")
    parser.add_argument("--version", action="version", version=VERSION)
    options = parser.parse_args(args)
    try:
        run_server(options.host, options.port, demo=options.demo)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"syncws serve: port {options.port} is in use (another server?): "
                "pick another with --port N, or --port 0 for any free port",
                file=sys.stderr,
            )
        else:
            print(f"syncws serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _client(args: list[str]) -> int:
    from .interactive import run_client  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="syncws", usage=USAGE)
    parser.add_argument("uri", help="ws:// or wss:// URI to connect to")
    parser.add_argument("--version", action="version", version=VERSION)
    parser.add_argument(
        "-t",
        "--text",
        action="append",
        default=[],
        metavar="TEXT",
        help="send TEXT once connected, before what you type (repeatable)",
    )
    parser.add_argument(
        "--header", action="append", default=[], metavar="NAME:VALUE", help="extra header"
    )
    parser.add_argument("--subprotocol", action="append", default=None, help="offer it")
    parser.add_argument("--no-compression", action="store_true", help="don't offer deflate")
    tls = parser.add_argument_group("wss:// URIs")
    tls.add_argument(
        "--cafile",
        metavar="PEM",
        help="verify the server's certificate against these CA certificates, not the system's",
    )
    tls.add_argument(
        "--insecure", action="store_true", help="don't verify the server's certificate at all"
    )
    options = parser.parse_args(args)
    headers = []
    for header in options.header:
        name, sep, value = header.partition(":")
        if not sep:
            parser.error(f"--header takes NAME:VALUE, not {header!r}")
        headers.append((name.strip(), value.strip()))
    tls_options: dict[str, Any] = {}
    if options.cafile is not None or options.insecure:
        if not options.uri.lower().startswith("wss://"):
            parser.error("--cafile and --insecure are for wss:// URIs")
        tls_options["ssl"] = _tls_context(parser, options.cafile, options.insecure)
    return run_client(
        options.uri,
        first_messages=options.text,
        additional_headers=headers,
        subprotocols=options.subprotocol,
        compression=None if options.no_compression else "deflate",
        **tls_options,
    )


def _tls_context(
    parser: argparse.ArgumentParser, cafile: str | None, insecure: bool
) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        parser.error(f"--cafile {cafile}: {exc.strerror or exc}")
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        print("warning: --insecure: the server's certificate isn't verified", file=sys.stderr)
    return context
