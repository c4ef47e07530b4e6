"""Every script in examples/ runs: the docs can't rot.

Scripts that run to completion run as they are; servers are started, used by
a client, and stopped with SIGTERM; clients run against an echo server. The
deployment files of examples/deploy/ run too: gunicorn with the documented
configuration serves the Flask example.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import runpy
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import syncws
from syncws.testing import run_server

from .pubsub.conftest import started_redis
from .threaded.helpers import WAIT, running_server

EXAMPLES_DIR = Path(__file__).parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))

#: Examples that run to completion with no arguments.
STANDALONE = {"custom_connection.py", "hello.py", "sansio_demo.py", "send_to_user.py"}
#: Servers: print "listening on ws://..." then serve until SIGTERM; the URI echoes.
SERVERS = {"echo_server.py", "chat_server.py", "flask_app.py", "routing_server.py"}
SERVERS |= {"router_server.py"}
#: Servers over TLS: the same, with --certfile and --keyfile, on wss://.
TLS_SERVERS = {"tls_server.py"}
#: Clients: take the URI of an echo server as their first argument.
CLIENTS = {"echo_client.py", "reconnecting_client.py", "stoppable_client.py"}
#: Test suites of their own, run with pytest as a reader would.
TEST_SUITES = {"test_flask_chat.py", "test_greeting_client.py"}
#: Files of examples/deploy/, each run by a test below.
DEPLOY = {"gunicorn.conf.py", "nginx.conf"}


def test_every_example_has_a_smoke_test() -> None:
    names = {path.name for path in EXAMPLES}
    assert names == STANDALONE | SERVERS | TLS_SERVERS | CLIENTS | TEST_SUITES
    assert {path.name for path in (EXAMPLES_DIR / "deploy").iterdir()} == DEPLOY


def reader_environment() -> dict[str, str]:
    """This process's environment less PYTEST_ADDOPTS: CI's coverage options aren't a reader's."""
    return {name: value for name, value in os.environ.items() if name != "PYTEST_ADDOPTS"}


@pytest.mark.parametrize("name", sorted(TEST_SUITES))
def test_example_test_suite_passes(name: str) -> None:
    # Outside our own configuration: the plugin loads through its entry point.
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null"),
            *("--rootdir", str(EXAMPLES_DIR), str(EXAMPLES_DIR / name)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=reader_environment(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b4 passed in ", result.stdout), result.stdout


def test_the_testing_page_command_runs_as_written() -> None:
    """docs/testing.rst's ``python -m pytest examples/...`` works from the checkout as it is.

    From the repository's root, so under its pyproject.toml: its pytest options
    must need nothing more than pytest and syncws (.ci/run also runs it in a
    virtualenv with only ``pip install . pytest``).
    """
    page = (EXAMPLES_DIR.parent / "docs" / "testing.rst").read_text()
    (command,) = re.findall(r"run it with ``(python -m pytest [^`]+)``", page)
    program, *arguments = command.split()
    assert program == "python"
    result = subprocess.run(
        [sys.executable, *arguments],
        cwd=EXAMPLES_DIR.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=reader_environment(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b4 passed in ", result.stdout), result.stdout


#: Lines each standalone example must print: what it shows worked, to its end.
STANDALONE_OUTPUT = {
    "custom_connection.py": [
        "client received {'reply': 'bonjour, Ada'} {'messages_sent': 2}",
        "client received {'reply': 'bonjour, Grace'} {'messages_sent': 4}",
    ],
    "hello.py": [
        "client sent 'hello'                  received 'HELLO'",
        "client sent 'goodbye'                received 'GOODBYE'",
        "client closed with code 1000",
        "server stopped",
    ],
    "sansio_demo.py": [
        "  client got: 101 Switching Protocols; state OPEN",
        "  server got Pong(data=b'are you there?') (the client answered the ping by itself)",
        "  both sides: CLOSED; sent 1000 (OK) bye; then received 1000 (OK) bye",
    ],
    "send_to_user.py": [
        "to alice: 2 connections",
        "to everyone: 3 connections",
        "alice's phone got: ['psst, alice', 'hello, all']",
        "bob's laptop got: ['hello, all']",
    ],
}


def test_every_standalone_example_has_its_expected_output() -> None:
    assert set(STANDALONE_OUTPUT) == STANDALONE


@pytest.mark.parametrize("name", sorted(STANDALONE))
def test_standalone_example_runs(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES_DIR / name)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    missing = [line for line in STANDALONE_OUTPUT[name] if line not in lines]
    assert not missing, result.stdout


@contextlib.contextmanager
def started(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start a server example; yield it and the URI it says it listens on."""
    with subprocess.Popen(
        [sys.executable, *args, "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            first_line = process.stdout.readline()
            assert re.match(r"listening on wss?://", first_line), first_line
            yield process, first_line.split()[-1]
        finally:
            process.kill()


def echoes_then_stops_on_sigterm(
    process: subprocess.Popen[str], uri: str, context: ssl.SSLContext | None = None
) -> str:
    """Check that ``uri`` echoes and that SIGTERM closes it with 1001; return stdout."""
    with syncws.connect(uri, ssl=context) as client:
        client.send("ping?")
        assert client.recv(WAIT) == "ping?"
        process.send_signal(signal.SIGTERM)
        with pytest.raises(syncws.ConnectionClosed) as closed:
            client.recv(WAIT)
        assert closed.value.code == 1001
    stdout, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 0, stderr
    assert "server stopped" in stdout
    return stdout


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_server_example_serves_and_stops_on_sigterm(name: str) -> None:
    with started(str(EXAMPLES_DIR / name)) as (process, uri):
        echoes_then_stops_on_sigterm(process, uri)


def test_router_server_example_routes_redirects_and_asks_for_a_password() -> None:
    with started(str(EXAMPLES_DIR / "router_server.py")) as (process, uri):
        with syncws.connect(uri + "lobby") as client:  # 302, followed
            assert client.recv(WAIT) == "demo joined lobby"
        for url, status in ((uri + "nowhere", 404), (uri.replace("demo:secret@", ""), 401)):
            with pytest.raises(syncws.InvalidStatus) as refused:
                syncws.connect(url)
            assert refused.value.status_code == status
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=WAIT)
    assert process.returncode == 0


@pytest.mark.parametrize("name", sorted(TLS_SERVERS))
def test_tls_server_example(name: str, tmp_path: Path) -> None:
    # As its docstring says: a test authority and certificate from trustme's command.
    subprocess.run([sys.executable, "-m", "trustme", "-q", "-d", str(tmp_path)], check=True)
    context = ssl.create_default_context(cafile=tmp_path / "client.pem")
    with started(
        str(EXAMPLES_DIR / name),
        *("--certfile", str(tmp_path / "server.pem"), "--keyfile", str(tmp_path / "server.key")),
    ) as (process, uri):
        assert uri.startswith("wss://localhost:")
        echoes_then_stops_on_sigterm(process, uri, context)


def test_routing_server_example_routes_answers_http_and_sets_headers() -> None:
    # What the FAQ says of it: routes, HTTP on the same port, headers, the client's address.
    with started(str(EXAMPLES_DIR / "routing_server.py"), "--token", "s3cret") as (process, uri):
        base = uri.removesuffix("echo")
        auth = {"Authorization": "Bearer s3cret"}
        with pytest.raises(syncws.InvalidStatus) as refused:
            syncws.connect(base + "echo")
        assert refused.value.status_code == 401
        assert "X-Request-Id" in refused.value.response.headers
        with pytest.raises(syncws.InvalidStatus) as refused:
            syncws.connect(base + "nowhere", additional_headers=auth)
        assert refused.value.status_code == 404
        with pytest.raises(syncws.InvalidStatus) as answered:
            syncws.connect(base + "healthz")  # plain HTTP would get the same 200
        assert answered.value.status_code == 200
        assert answered.value.response.body == b"OK\n"
        forwarded = auth | {"X-Forwarded-For": "203.0.113.7"}
        with syncws.connect(base + "clock", additional_headers=forwarded) as client:
            assert client.response is not None
            assert "X-Request-Id" in client.response.headers
            assert re.fullmatch(r"\d\d:\d\d:\d\d", str(client.recv(WAIT)))
        with syncws.connect(uri, additional_headers=auth) as client:
            client.send("ping?")
            assert client.recv(WAIT) == "ping?"
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=WAIT)
    assert "203.0.113.7 opened /clock" in stdout  # loopback is a trusted proxy there
    assert "127.0.0.1 opened /echo" in stdout


def _echo(connection: syncws.ServerConnection) -> None:
    for message in connection:
        connection.send(message)


@pytest.mark.parametrize("name", sorted(CLIENTS))
def test_client_example_talks_to_a_server(name: str) -> None:
    with running_server(_echo) as server:
        result = subprocess.run(
            [sys.executable, str(EXAMPLES_DIR / name), f"ws://127.0.0.1:{server.port}/"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert "received" in result.stdout


def test_stoppable_client_stops_quickly_and_cleanly() -> None:
    # close() from a thread of the signal handler: no close_timeout wait, code 1000.
    with running_server(_echo) as server:
        result = subprocess.run(
            [
                sys.executable,
                str(EXAMPLES_DIR / "stoppable_client.py"),
                f"ws://127.0.0.1:{server.port}/",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("received") == 3
    assert "close code 1000" in result.stdout


@contextlib.contextmanager
def gunicorn_example(
    *options: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The deployment guide's gunicorn.conf.py, as documented, with the Flask example."""
    executable = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert executable, "gunicorn is in the test extra"
    command = [
        *(executable, "-c", str(EXAMPLES_DIR / "deploy" / "gunicorn.conf.py")),
        *("--bind", "127.0.0.1:0", *options, "--chdir", str(EXAMPLES_DIR)),
        "flask_app:app",
    ]
    with subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=os.environ | (env or {})
    ) as process:
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if "Listening at:" in line:
                    break
            else:
                raise AssertionError("gunicorn didn't start")
            yield process, int(line.rsplit(":", 1)[-1].split()[0])
        finally:
            process.kill()


def test_gunicorn_config_serves_the_flask_example() -> None:
    with gunicorn_example("--workers", "1") as (process, port):
        with syncws.connect(f"ws://127.0.0.1:{port}/ws") as client:
            client.send("ping?")
            assert client.recv(WAIT) == "ping?"
            assert post(port, "/broadcast", b"to all") == "sent to 1 clients of this process\n"
            assert client.recv(WAIT) == "to all"
            process.send_signal(signal.SIGTERM)
            with pytest.raises(syncws.ConnectionClosed) as closed:
                client.recv(WAIT)  # at once, thanks to the hook: not after graceful_timeout
            assert closed.value.code == 1001
        process.communicate(timeout=WAIT)
        assert process.returncode == 0


def post(port: int, path: str, data: bytes) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST")
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        return response.read().decode()


def test_gunicorn_config_runs_one_worker_unless_redis_carries_broadcasts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = str(EXAMPLES_DIR / "deploy" / "gunicorn.conf.py")
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert runpy.run_path(config)["workers"] == 1
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    assert runpy.run_path(config)["workers"] == (os.cpu_count() or 1)


@pytest.fixture
def redis_url() -> Iterator[str]:
    with started_redis() as server:
        yield server.url


def test_flask_example_broadcasts_to_every_process_through_redis(redis_url: str) -> None:
    # Two gunicorn servers stand for two workers: a client of one hears the other's broadcast.
    env = {"REDIS_URL": redis_url}
    with (
        gunicorn_example("--workers", "1", env=env) as (first, first_port),
        gunicorn_example("--workers", "1", env=env) as (second, second_port),
    ):
        with syncws.connect(f"ws://127.0.0.1:{first_port}/ws") as client:
            client.send("ping?")
            assert client.recv(WAIT) == "ping?"  # subscribed, in Redis too
            answer = post(second_port, "/broadcast", b"from the other process")
            assert answer == (
                "sent to 0 clients of this process and to the other processes through Redis\n"
            )
            assert client.recv(WAIT) == "from the other process"
        for process in (first, second):
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=WAIT)
            assert process.returncode == 0


# -- nginx ------------------------------------------------------------------------------------

NGINX_CONF = EXAMPLES_DIR / "deploy" / "nginx.conf"


def nginx_directives(text: str) -> list[tuple[str, str]]:
    """The simple directives of an nginx file, as (name, arguments)."""
    code = re.sub(r"#.*", "", text)
    assert code.count("{") == code.count("}")
    return [
        (name, " ".join(args.split()))
        for name, args in re.findall(r"^\s*(\w+)\s+([^;{}]*);", code, re.MULTILINE)
    ]


def test_nginx_config_passes_the_upgrade_and_outlasts_keepalive() -> None:
    directives = nginx_directives(NGINX_CONF.read_text())
    assert ("proxy_http_version", "1.1") in directives
    assert ("proxy_set_header", "Upgrade $http_upgrade") in directives
    assert ("proxy_set_header", "Connection $connection_upgrade") in directives
    assert ("proxy_set_header", "X-Forwarded-For $proxy_add_x_forwarded_for") in directives
    assert "map $http_upgrade $connection_upgrade" in NGINX_CONF.read_text()
    (timeout,) = [
        int(args.removesuffix("s")) for name, args in directives if name == "proxy_read_timeout"
    ]
    defaults = inspect.signature(syncws.serve).parameters
    ping_interval = defaults["ping_interval"].default
    assert timeout > 2 * (ping_interval + defaults["ping_timeout"].default)


def nginx_executable() -> str:
    executable = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing: .ci/run installs it")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return executable


@contextlib.contextmanager
def nginx(tmp_path: Path, ports: list[int], read_timeout: str) -> Iterator[int]:
    """Run nginx with the documented file, on a free port, before ``ports``; yield its port.

    nginx gets its listening socket from us, bound to port 0 and listening
    already (it takes sockets from the NGINX variable, as in its binary
    upgrade): no port is picked, freed, then bound by nginx later.
    """
    executable = nginx_executable()  # skips before anything is opened
    subprocess.run([sys.executable, "-m", "trustme", "-q", "-d", str(tmp_path)], check=True)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    site = NGINX_CONF.read_text()
    replacements = {
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "/etc/ssl/example.com/fullchain.pem": str(tmp_path / "server.pem"),
        "/etc/ssl/example.com/privkey.pem": str(tmp_path / "server.key"),
        "127.0.0.1:8001": f"127.0.0.1:{ports[0]}",
        "127.0.0.1:8002": f"127.0.0.1:{ports[1]}",
        "proxy_read_timeout 300s;": f"proxy_read_timeout {read_timeout};",
    }
    for old, new in replacements.items():
        assert old in site, old
        site = site.replace(old, new)
    (tmp_path / "site.conf").write_text(site)
    temp = {name: tmp_path / name for name in ("client", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n"
        + "".join(f"    {name}_temp_path {path};\n" for name, path in temp.items()).replace(
            "    client_temp_path", "    client_body_temp_path"
        )
        + f"    include {tmp_path}/site.conf;\n}}\n"
    )
    command = [executable, "-p", str(tmp_path), "-e", str(tmp_path / "error.log")]
    command += ["-c", str(tmp_path / "nginx.conf")]
    # A configuration nginx refuses fails here, with its reason, not as a client's timeout.
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    with (
        listener,
        subprocess.Popen(
            command,
            pass_fds=[listener.fileno()],
            env={**os.environ, "NGINX": f"{listener.fileno()};"},
        ) as process,
    ):
        try:
            yield port  # connections wait in the listener's backlog until nginx accepts
        finally:
            process.terminate()
            process.wait(WAIT)


def test_behind_nginx_with_the_documented_config(tmp_path: Path) -> None:
    # TLS at nginx, ws:// behind it; the upgrade, the client's address and the
    # keepalive claim of the deployment guide: pings keep a quiet connection
    # open past proxy_read_timeout, and without them nginx cuts it (1006).
    seen: list[tuple[object, str | None, str | None]] = []

    def handler(connection: syncws.ServerConnection) -> None:
        assert connection.request is not None
        headers = connection.request.headers
        seen.append(
            (
                connection.remote_address[0],
                headers.get("X-Forwarded-For"),
                headers.get("X-Forwarded-Proto"),
            )
        )
        for message in connection:
            connection.send(message)

    options = {"handler": handler, "ping_interval": None}
    with (
        run_server(**options) as first,
        run_server(**options) as second,
        nginx(tmp_path, [first.port, second.port], read_timeout="2s") as port,
    ):
        context = ssl.create_default_context(cafile=tmp_path / "client.pem")
        uri = f"wss://localhost:{port}/ws/"
        pings = {"ping_interval": 0.5, "ping_timeout": 0.5}
        with syncws.connect(uri, ssl=context, **pings) as client:
            client.send("ping?")
            assert client.recv(WAIT) == "ping?"
            time.sleep(3)  # quiet, but for keepalive
            client.send("still there?")
            assert client.recv(WAIT) == "still there?"
        with syncws.connect(uri, ssl=context, ping_interval=None) as client:
            with pytest.raises(syncws.ConnectionClosedError) as cut:
                client.recv(3 * WAIT)
            assert cut.value.code == 1006
    assert seen[0] == ("127.0.0.1", "127.0.0.1", "https")
