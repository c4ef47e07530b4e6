"""An echo server over TLS: wss:// with a certificate and its private key.

    python -m trustme          # a test certificate for localhost (pip install trustme)
    python examples/tls_server.py --certfile server.pem --keyfile server.key

Clients then need to trust the test authority: ``trustme`` wrote it to
client.pem (see the deployment guide). In production the certificate comes
from a real authority, or TLS ends at a proxy in front of a plain ws:// server.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import ssl

import syncws


def echo(connection: syncws.ServerConnection) -> None:
    for message in connection:
        connection.send(message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--certfile", required=True, help="the certificate chain, PEM")
    parser.add_argument("--keyfile", help="its private key, PEM (if not in --certfile)")
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # TLS 1.2 or later, no client certs
    context.load_cert_chain(args.certfile, args.keyfile)

    # The TLS handshake runs in the connection's thread, within open_timeout.
    with syncws.serve(echo, args.host, args.port, ssl=context) as server:
        signal.signal(signal.SIGTERM, lambda signum, frame: server.shutdown())
        print(f"listening on wss://localhost:{server.port}/", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
