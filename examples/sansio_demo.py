"""A WebSocket client and server talking through the protocol core, in memory.

No socket and no thread: each side's output bytes are handed to the other's
``receive_data()``. This is what the threaded layer does with real sockets.
Run it to see the opening handshake, compressed messages, a ping and the
closing handshake go by, with the bytes on the wire.
"""

from __future__ import annotations

from syncws.protocol.client import ClientProtocol
from syncws.protocol.connection import Protocol
from syncws.protocol.http11 import Request, Response
from syncws.protocol.server import ServerProtocol


def transfer(sender: Protocol, receiver: Protocol, label: str) -> list[object]:
    """Move what ``sender`` wrote into ``receiver``; print it; return the events."""
    data = b"".join(sender.data_to_send())
    if data:
        shown = data if len(data) <= 48 else data[:45] + b"..."
        print(f"  {label}: {len(data)} bytes {shown!r}")
        receiver.receive_data(data)
    return receiver.events_received()


def main() -> None:
    client = ClientProtocol("example.com", "/chat")
    server = ServerProtocol()

    print("Opening handshake")
    client.send_request(client.connect())
    (request,) = transfer(client, server, "client -> server")
    assert isinstance(request, Request)
    offer = request.headers.get("Sec-WebSocket-Extensions")
    print(f"  server got: GET {request.path}, offering {offer}")
    server.send_response(server.accept(request))
    (response,) = transfer(server, client, "server -> client")
    assert isinstance(response, Response)
    print(f"  client got: {response.status} {response.reason}; state {client.state.name}")
    print(f"  extensions in use: {[extension.name for extension in client.extensions]}")

    print("Messages")
    client.send_text("Hello, server! " * 8)
    for event in transfer(client, server, "client -> server"):
        print(f"  server got {type(event).__name__}: {event.data[:30]!r}...")  # type: ignore[attr-defined]
    server.send_binary(bytes(range(10)))
    server.send_ping(b"are you there?")
    for event in transfer(server, client, "server -> client"):
        print(f"  client got {event}")
    for event in transfer(client, server, "client -> server"):
        print(f"  server got {event} (the client answered the ping by itself)")

    print("Closing handshake")
    client.send_close(1000, "bye")
    for event in transfer(client, server, "client -> server"):
        print(f"  server got {event}; it echoes the close frame")
    for event in transfer(server, client, "server -> client"):
        print(f"  client got {event}")
    print(f"  server closes TCP now: {server.should_close_transport}")
    server.receive_eof()
    client.receive_eof()
    print(f"  both sides: {client.state.name}; {client.close_exc()}")


if __name__ == "__main__":
    main()
