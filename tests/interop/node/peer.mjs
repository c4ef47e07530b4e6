// A WebSocket peer built on Node's ws, driven by tests/interop/test_node.py.
//
//   node peer.mjs server [--deflate=OPTIONS] [--echo]       listen on 127.0.0.1, a free port
//   node peer.mjs client URL [--deflate=OPTIONS] [--echo]   connect to URL
//
// It reports what happens on stdout, one JSON object a line ({"event": ...}),
// and does what stdin says, one JSON object a line ({"cmd": ...}). A server
// takes one connection. Once the connection is closed, it reports "close" and
// exits with status 0.
import { createHash } from "node:crypto";
import { createInterface } from "node:readline";
import { WebSocket, WebSocketServer } from "ws";

const [role, ...args] = process.argv.slice(2);
const echo = args.includes("--echo");
// --deflate=OPTIONS (JSON: ws's perMessageDeflate options) turns compression on,
// for every message however small (ws skips those under 1 KiB by default).
const deflate = args.find((arg) => arg.startsWith("--deflate="));
const perMessageDeflate = deflate
  ? { threshold: 0, ...JSON.parse(deflate.slice("--deflate=".length)) }
  : false;

function report(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

// The same messages as tests/interop/peers.py and harness.html.
const TEXT_UNIT = "syncws \u21c4 ws, gr\u00fc\u00dfe \u{1F389} ok! "; // 32 bytes of UTF-8

function textMessage(size) {
  return Buffer.from(TEXT_UNIT.repeat(size / 32));
}

function binaryMessage(size) {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) {
    data[i] = Math.floor((i * 2654435761) / 8192) % 256; // exact: below 2 ** 53
  }
  return data;
}

function describe(data, isBinary) {
  const fields = {
    binary: isBinary,
    length: data.length,
    sha256: createHash("sha256").update(data).digest("hex"),
  };
  if (data.length <= 1000) {
    if (isBinary) fields.hex = data.toString("hex");
    else fields.text = data.toString("utf8");
  }
  return fields;
}

let socket = null;

function attach(ws) {
  ws.on("message", (data, isBinary) => {
    report("message", describe(data, isBinary));
    if (echo) ws.send(data, { binary: isBinary });
  });
  ws.on("ping", (data) => report("ping", { hex: data.toString("hex") }));
  ws.on("pong", (data) => report("pong", { hex: data.toString("hex") }));
  ws.on("error", (error) => report("error", { message: error.message }));
  ws.on("close", (code, reason) => {
    report("close", { code, reason: reason.toString("utf8") });
    process.exit(0);
  });
}

// Send a message, in `fragments` frames if more than one (split anywhere, even
// inside a UTF-8 character: only the whole message must be valid).
function send(data, binary, fragments) {
  if (fragments <= 1) {
    socket.send(data, { binary });
    return;
  }
  const step = Math.ceil(data.length / fragments);
  for (let start = 0; start < data.length; start += step) {
    const fin = start + step >= data.length;
    socket.send(data.subarray(start, start + step), { binary, fin });
  }
}

function run(command) {
  switch (command.cmd) {
    case "send": {
      let data;
      if (command.text !== undefined) data = Buffer.from(command.text);
      else if (command.hex !== undefined) data = Buffer.from(command.hex, "hex");
      else data = command.binary ? binaryMessage(command.size) : textMessage(command.size);
      const binary = command.binary ?? command.hex !== undefined;
      send(data, binary, command.fragments ?? 1);
      break;
    }
    case "ping":
      socket.ping(Buffer.from(command.hex ?? "", "hex"));
      break;
    case "close":
      socket.close(command.code ?? undefined, command.reason ?? undefined);
      break;
    default:
      report("error", { message: `unknown command ${JSON.stringify(command)}` });
  }
}

createInterface({ input: process.stdin }).on("line", (line) => run(JSON.parse(line)));

if (role === "server") {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate });
  server.on("listening", () => report("listening", { port: server.address().port }));
  server.on("connection", (ws, request) => {
    socket = ws;
    attach(ws);
    report("open", {
      extensions: ws.extensions,
      offered: request.headers["sec-websocket-extensions"] ?? null,
    });
    server.close(); // no other connection
  });
} else if (role === "client") {
  const url = args.find((arg) => !arg.startsWith("--"));
  socket = new WebSocket(url, { perMessageDeflate });
  attach(socket);
  socket.on("open", () => report("open", { extensions: socket.extensions }));
  socket.on("unexpected-response", (request, response) => {
    report("error", { message: `HTTP ${response.statusCode}` });
    process.exit(1);
  });
} else {
  process.stderr.write("usage: node peer.mjs server|client [URL] [--deflate=OPTIONS] [--echo]\n");
  process.exit(2);
}
