"""The syncws command: the interactive client and ``serve`` (echo and the demo chat)."""

from __future__ import annotations

import io
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import syncws
from syncws.cli import main
from syncws.cli.interactive import WAKE_SIGNAL, Console, Prompt, Woken, run_client
from syncws.cli.serve import HISTORY, DemoChat
from syncws.testing import run_server

from .threaded.helpers import WAIT, refused_port, wait_until

pytestmark = pytest.mark.timeout(60)


def cli(
    *args: str, sigint: signal.Handlers = signal.SIG_DFL, **kwargs: object
) -> subprocess.Popen[str]:
    """``python -m syncws ARGS``, which inherits ``sigint`` as SIGINT's disposition.

    SIG_DFL by default: Ctrl-C works in the command even when this test run
    ignores SIGINT (started by ``nohup`` or with ``&`` from a script), and
    SIG_IGN runs it as such a run would.
    """
    previous = signal.signal(signal.SIGINT, sigint)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "syncws", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,  # type: ignore[call-overload]
        )
    finally:
        signal.signal(signal.SIGINT, previous)


#: The command's SIGINT disposition: as in a terminal, and ignored (nohup, cmd &).
SIGINT_DISPOSITIONS = pytest.mark.parametrize(
    "sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["sigint-default", "sigint-ignored"]
)


@pytest.fixture
def serve_process(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m syncws serve`` with the marker's arguments; yield it and its address."""
    process = cli("serve", "--host", "127.0.0.1", "--port", "0", *request.param)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline()]
        if "--demo" in request.param:
            lines.append(process.stdout.readline())
        assert lines[-1].startswith("listening on ws://"), lines
        yield process, lines[-1].split()[2]
    finally:
        process.kill()
        process.communicate()


# -- serve ----------------------------------------------------------------------------------


@pytest.mark.parametrize("serve_process", [()], indirect=True)
def test_serve_echoes_and_stops_cleanly_on_ctrl_c(
    serve_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, uri = serve_process
    with syncws.connect(uri) as client:
        client.send("echo?")
        assert client.recv(timeout=WAIT) == "echo?"
        process.send_signal(signal.SIGINT)
        with pytest.raises(syncws.ConnectionClosed) as caught:
            client.recv(timeout=WAIT)
        assert caught.value.code == 1001
    stdout, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 0
    assert "server stopped" in stdout
    assert "Traceback" not in stderr


@pytest.mark.parametrize("serve_process", [("--demo",)], indirect=True)
def test_demo_serves_its_page_and_the_chat_on_one_port(
    serve_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, uri = serve_process
    http = uri.replace("ws://", "http://").removesuffix("/ws")
    with urllib.request.urlopen(http + "/", timeout=WAIT) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        page = response.read().decode()
    assert "<title>syncws demo chat</title>" in page
    assert "new WebSocket(" in page
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(http + "/elsewhere", timeout=WAIT)
    assert missing.value.code == 404
    missing.value.close()
    with pytest.raises(syncws.InvalidStatus) as refused:
        syncws.connect(http.replace("http://", "ws://") + "/elsewhere")
    assert refused.value.response.status == 404
    with syncws.connect(uri) as ada:
        # One after the other: each join announces the count to everyone there.
        assert json.loads(ada.recv(timeout=WAIT)) == {"type": "presence", "count": 1}
        bob = syncws.connect(uri)
        assert json.loads(ada.recv(timeout=WAIT)) == {"type": "presence", "count": 2}
        assert json.loads(bob.recv(timeout=WAIT)) == {"type": "presence", "count": 2}
        ada.send(json.dumps({"name": "ada", "text": "hi <b>all</b>"}))
        expected = {"type": "message", "name": "ada", "text": "hi <b>all</b>"}
        assert json.loads(ada.recv(timeout=WAIT)) == expected
        assert json.loads(bob.recv(timeout=WAIT)) == expected
        process.send_signal(signal.SIGTERM)
        with pytest.raises(syncws.ConnectionClosed) as caught:
            # Ada's connection may close first: then bob hears the new count.
            while True:
                assert json.loads(bob.recv(timeout=WAIT))["type"] == "presence"
        assert caught.value.code == 1001
        bob.close()
    process.communicate(timeout=WAIT)
    assert process.returncode == 0


def test_serve_reports_a_port_in_use() -> None:
    with run_server() as running:
        process = cli("serve", "--host", "127.0.0.1", "--port", str(running.port))
        _, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 1
    assert f"syncws serve: port {running.port} is in use" in stderr
    assert "--port" in stderr
    assert "Traceback" not in stderr


def test_serve_listens_on_loopback_by_default() -> None:
    """The demo chat isn't on the network unless asked: 127.0.0.1 unless --host says otherwise."""
    process = cli("serve", "--demo", "--port", "0")
    try:
        assert process.stdout is not None
        first, second = process.stdout.readline(), process.stdout.readline()
        assert first.startswith("syncws demo chat: open http://127.0.0.1:"), first
        assert second.startswith("listening on ws://127.0.0.1:"), second
        port = int(second.split()[2].rsplit(":", 1)[1].split("/")[0])
        with syncws.connect(f"ws://127.0.0.1:{port}/ws") as client:
            assert json.loads(client.recv(timeout=WAIT))["type"] == "presence"
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "every interface" not in stdout


def test_serve_help_says_how_to_share(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default 127.0.0.1: this machine only" in help_text
    assert "--host 0.0.0.0 shares it with the network" in help_text


# -- the demo chat in-process ---------------------------------------------------------------------


def test_demo_chat_history_and_bad_messages() -> None:
    chat = DemoChat()
    with run_server(chat.handler, process_request=chat.process_request) as running:
        uri = running.uri + "ws"
        http = running.uri.replace("ws://", "http://")
        with urllib.request.urlopen(http, timeout=WAIT) as response:
            assert b"syncws demo chat" in response.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(http + "nope", timeout=WAIT)
        missing.value.close()
        with pytest.raises(syncws.InvalidStatus):
            syncws.connect(running.uri + "elsewhere")
        with syncws.connect(uri) as first:
            assert json.loads(first.recv(timeout=WAIT))["count"] == 1
            # Text that isn't a page's JSON is a chat line from the connection.
            first.send("not json")
            first.send(json.dumps({"name": "no text"}))
            first.send("  ")  # blank: nothing to say
            first.send(b"\x00binary")
            assert json.loads(first.recv(timeout=WAIT)) == {
                "type": "message",
                "name": "user-1",
                "text": "not json",
            }
            assert json.loads(first.recv(timeout=WAIT))["text"] == '{"name": "no text"}'
            assert json.loads(first.recv(timeout=WAIT)) == {
                "type": "error",
                "text": "The demo chat takes text messages; this binary one was dropped.",
            }
            for i in range(HISTORY + 2):
                first.send(json.dumps({"name": "n" * 100, "text": f"line {i}"}))
            for i in range(HISTORY + 2):
                message = json.loads(first.recv(timeout=WAIT))
                assert message == {"type": "message", "name": "n" * 40, "text": f"line {i}"}
            # A page that joins later sees the last messages first.
            with syncws.connect(uri) as later:
                history = [json.loads(later.recv(timeout=WAIT)) for _ in range(HISTORY)]
                assert [m["text"] for m in history] == [f"line {i}" for i in range(2, HISTORY + 2)]
                assert json.loads(later.recv(timeout=WAIT))["count"] == 2


@SIGINT_DISPOSITIONS
def test_the_interactive_client_talks_with_the_demo(sigint: signal.Handlers) -> None:
    """Plain text typed in ``python -m syncws URI`` is a chat line for every page."""
    chat = DemoChat()
    with run_server(chat.handler, process_request=chat.process_request) as running:
        uri = running.uri + "ws"
        with syncws.connect(uri) as page:
            assert json.loads(page.recv(timeout=WAIT))["count"] == 1
            process = cli(uri + "?name=ada", sigint=sigint)
            try:
                assert process.stdin is not None and process.stdout is not None
                assert process.stdout.readline().startswith("connected to")
                assert json.loads(page.recv(timeout=WAIT))["count"] == 2
                process.stdin.write("hello from a terminal\n")
                process.stdin.flush()
                mine = {"type": "message", "name": "ada", "text": "hello from a terminal"}
                assert json.loads(page.recv(timeout=WAIT)) == mine
                page.send(json.dumps({"name": "guest-1234", "text": "hi ada"}))
                assert json.loads(page.recv(timeout=WAIT))["text"] == "hi ada"
                received = []
                while not received or received[-1].get("text") != "hi ada":
                    line = process.stdout.readline()
                    assert line.startswith("< "), line
                    received.append(json.loads(line[2:]))
                assert received == [
                    {"type": "presence", "count": 2},
                    mine,
                    {"type": "message", "name": "guest-1234", "text": "hi ada"},
                ]
                stdout, stderr = process.communicate(timeout=WAIT)  # EOF: the client quits
            finally:
                if process.poll() is None:
                    process.kill()
                    process.communicate()
            assert json.loads(page.recv(timeout=WAIT))["count"] == 1
    assert process.returncode == 0
    assert stdout.startswith("connection closed: 1000")
    assert stderr == ""


# -- the interactive client ------------------------------------------------------------------------


class ClosingAfter(io.StringIO):
    """Typed lines; the ``/close`` line only once ``ready`` is set.

    A server answers a close frame at once, so an echo still on its way in
    the handler would be dropped (rightly): the test waits for the echoes.
    """

    def __init__(self, text: str, ready: threading.Event) -> None:
        super().__init__(text)
        self.ready = ready

    def readline(self, size: int | None = -1) -> str:
        line = super().readline(size)
        if line.startswith("/close"):
            assert self.ready.wait(WAIT)
        return line


def test_client_sends_lines_and_commands(capsys: pytest.CaptureFixture[str]) -> None:
    script = (
        "hello\n//slash\n/binary 00ff10\n/binary zz\n/ping\n/unknown\n/help\n/close 4000 done\n"
    )
    echoed = threading.Event()

    def echo(connection: syncws.ServerConnection) -> None:
        for message in connection:
            connection.send(message)
            if isinstance(message, bytes):  # the last message the script sends
                echoed.set()

    with run_server(echo) as running:
        status = run_client(running.uri, input_stream=ClosingAfter(script, echoed))
    output = capsys.readouterr().out
    assert status == 0
    assert "connected to ws://127.0.0.1:" in output
    assert "< hello" in output
    assert "< /slash" in output
    assert "< (binary, 3 bytes) 00 ff 10" in output
    assert "/binary takes hex digits" in output
    assert "pong after" in output
    assert "unknown command /unknown" in output
    assert "commands:" in output
    assert "connection closed: 4000" in output


def test_client_exits_at_end_of_input(capsys: pytest.CaptureFixture[str]) -> None:
    with run_server() as running:
        assert run_client(running.uri, input_stream=io.StringIO("")) == 0
    assert "connection closed: 1000" in capsys.readouterr().out


def test_client_bad_close_commands_say_how(capsys: pytest.CaptureFixture[str]) -> None:
    script = "/close abc\n/close 1005\n/close 4000 bye\n"
    with run_server() as running:
        assert run_client(running.uri, input_stream=io.StringIO(script)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "! /close takes a close code and a reason, like /close 1000 bye (or /close alone)",
        "! close code 1005 may not be sent: use 1000-1003, 1007-1014 or 3000-4999",
        "connection closed: 4000 bye",
    ]


class Terminal(io.StringIO):
    """Standard output as a terminal: the client shows a prompt and redraws it."""

    def isatty(self) -> bool:
        return True


def test_client_prompt_is_drawn_once(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stdin", io.StringIO("/unknown\n"))  # input() reads it
    with run_server() as running:
        assert run_client(running.uri) == 0
    erase = "\r\x1b[K"
    # The prompt appears when input() waits for a line, and only then.
    assert terminal.getvalue() == (
        f"{erase}connected to {running.uri} (/help for commands, Ctrl-D to quit)\n"
        "> "
        f"{erase}! unknown command /unknown; /help lists them\n"
        "> "
        f"{erase}connection closed: 1000\n"
    )


def test_client_that_cannot_connect(capsys: pytest.CaptureFixture[str]) -> None:
    with refused_port() as port:
        assert run_client(f"ws://127.0.0.1:{port}/", open_timeout=2) == 1
    assert "couldn't connect" in capsys.readouterr().err


@SIGINT_DISPOSITIONS
def test_client_process_ends_when_the_server_closes(sigint: signal.Handlers) -> None:
    def close_soon(connection: syncws.ServerConnection) -> None:
        connection.recv(timeout=WAIT)
        connection.close(4001, "kicked")

    with run_server(close_soon) as running:
        process = cli(running.uri, sigint=sigint)
        try:
            assert process.stdin is not None and process.stdout is not None
            assert process.stdout.readline().startswith("connected to")
            process.stdin.write("hi\n")
            process.stdin.flush()
            # The client waits for input, stdin stays open: it must stop by itself.
            process.wait(WAIT)
            stdout, stderr = process.communicate(timeout=WAIT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert stdout.startswith("connection closed: 4001 kicked")
    assert process.returncode == 1  # the server ended it with an error code
    assert "Traceback" not in stderr


def test_client_process_stops_on_ctrl_c() -> None:
    with run_server() as running:
        process = cli(running.uri)
        assert process.stdout is not None
        assert process.stdout.readline().startswith("connected to")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 0
    assert "connection closed: 1000" in stdout
    assert "Traceback" not in stderr


def test_client_options_and_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    seen = []

    def record(connection: syncws.ServerConnection) -> None:
        assert connection.request is not None
        seen.append(
            (
                connection.request.headers.get("X-Test"),
                connection.subprotocol,
                connection.protocol.extensions,
            )
        )

    with run_server(record, subprotocols=["chat"]) as running:
        status = main(
            [running.uri, "--header", "X-Test: yes", "--subprotocol", "chat", "--no-compression"]
        )
    assert status == 0
    assert seen == [("yes", "chat", [])]
    with pytest.raises(SystemExit) as caught:
        main(["ws://127.0.0.1:1/", "--header", "no-colon"])
    assert caught.value.code == 2
    assert "NAME:VALUE" in capsys.readouterr().err


def test_client_sends_text_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("typed\n"))
    seen: list[str | bytes] = []

    def record(connection: syncws.ServerConnection) -> None:
        seen.extend(connection)

    with run_server(record) as running:
        assert main([running.uri, "-t", "first", "--text", "/not a command"]) == 0
    assert seen == ["first", "/not a command", "typed"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["--version"], ["serve", "--version"]):
        with pytest.raises(SystemExit) as caught:
            main(command)
        assert caught.value.code == 0
        assert capsys.readouterr().out == f"syncws {syncws.__version__}\n"


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def test_client_tls_options(
    authority: trustme.CA,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    cafile = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(cafile))
    with run_server(ssl=context) as running:
        uri = f"wss://localhost:{running.port}/"
        # The test authority isn't one the system trusts.
        assert main([uri]) == 1
        assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
        assert main([uri, "--cafile", str(cafile)]) == 0
        assert "connection closed: 1000" in capsys.readouterr().out
        assert main([uri, "--insecure"]) == 0
        output = capsys.readouterr()
        assert "connection closed: 1000" in output.out
        assert "warning: --insecure" in output.err
    for wrong, message in [
        (["ws://localhost/", "--insecure"], "--cafile and --insecure are for wss:// URIs"),
        (["wss://localhost/", "--cafile", str(tmp_path / "nope.pem")], "No such file"),
    ]:
        with pytest.raises(SystemExit) as caught:
            main(wrong)
        assert caught.value.code == 2
        assert message in capsys.readouterr().err


def test_installed_script_and_help() -> None:
    script = Path(sys.executable).with_name("syncws")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "syncws"]
    result = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, timeout=WAIT, check=False
    )
    assert result.returncode == 0
    assert "syncws serve" in result.stdout
    assert os.path.basename(command[0]) in ("syncws", os.path.basename(sys.executable))


# -- serve, in-process ----------------------------------------------------------------------------


@pytest.fixture
def keep_sigterm() -> Iterator[None]:
    """run_server() installs a SIGTERM handler: put the previous one back."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("keep_sigterm")
@pytest.mark.parametrize("demo", [False, True])
def test_run_server_in_process(demo: bool, capsys: pytest.CaptureFixture[str]) -> None:
    from syncws.cli.serve import run_server as serve_cli  # noqa: PLC0415

    results: list[object] = []

    def ready(server: syncws.Server) -> None:
        def use() -> None:
            path = "/ws" if demo else "/"
            try:
                with syncws.connect(f"ws://127.0.0.1:{server.port}{path}") as client:
                    if demo:
                        results.append(json.loads(client.recv(timeout=WAIT)))
                    else:
                        client.send("in process")
                        results.append(client.recv(timeout=WAIT))
            finally:
                server.shutdown()

        threading.Thread(target=use).start()

    serve_cli("127.0.0.1", 0, demo=demo, ready=ready)
    output = capsys.readouterr().out
    assert "server stopped" in output
    if demo:
        assert "open http://127.0.0.1:" in output
        assert results == [{"type": "presence", "count": 1}]
    else:
        assert results == ["in process"]


def test_serve_command_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with run_server() as running:
        assert main(["serve", "--port", str(running.port)]) == 1
    assert f"port {running.port} is in use" in capsys.readouterr().err


def test_prompt_without_pthread_kill_is_not_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Windows has no signal.pthread_kill: the prompt must not call it (the
    # next Enter ends the read there), rather than fail when the server closes.
    monkeypatch.delattr(signal, "pthread_kill")
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as stream, os.fdopen(write_end, "w") as writer:
        prompt = Prompt(Console(io.StringIO()), stream)
        writer.write("line\n")
        writer.flush()
        assert prompt.read() == "line"
        prompt._waiting = True
        prompt.interrupt()  # no AttributeError


def test_prompt_is_woken_without_sigint() -> None:
    """The reader thread wakes a blocked read with WAKE_SIGNAL, even with SIGINT ignored."""
    previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_wake = signal.getsignal(WAKE_SIGNAL)
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(read_end) as stream, os.fdopen(write_end, "w"):
            prompt = Prompt(Console(io.StringIO()), stream)

            def wake() -> None:
                wait_until(lambda: prompt._waiting)
                prompt.interrupt()

            waker = threading.Thread(target=wake)
            with prompt.wakeable():
                waker.start()
                with pytest.raises(Woken):
                    prompt.read()  # nothing typed: only the signal ends it
            waker.join(WAIT)
            prompt._waiting = True
            prompt.interrupt()  # after the session: no signal any more
    finally:
        signal.signal(signal.SIGINT, previous_sigint)
    assert signal.getsignal(WAKE_SIGNAL) == previous_wake
