"""Run the Autobahn conformance cases (driven by kosoku) against our server and client.

``kosoku -m fuzzingclient`` plays the client against a server under test;
``kosoku -m fuzzingserver`` is the server our client fetches cases from (the
Autobahn URLs ``/getCaseCount``, ``/runCase``, ``/updateReports``). Both
write Autobahn-format reports; ``summarize()`` counts outcomes per category.
"""

from __future__ import annotations

import collections
import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import syncws
from syncws.protocol import ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory

#: Outcomes that pass. NON-STRICT and UNIMPLEMENTED fail: we implement everything.
PASSING = {"OK", "INFORMATIONAL"}

CATEGORIES = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 handling",
    "7": "Close handling",
    "9": "Limits/performance",
    "10": "Miscellaneous",
    "12": "permessage-deflate",
    "13": "permessage-deflate parameters",
}

#: Cases that need permessage-deflate.
COMPRESSION_CASES = ("12.*", "13.*")
#: Messages up to 16 MiB in cases 9.x.
MAX_SIZE = 2**25
#: Cases played at once by our client, and by kosoku against our server: more
#: than one per core, so that one case's waits overlap another's work.
PLAYERS = 4
#: Hard bound for one kosoku run.
RUN_TIMEOUT = 600.0
#: zlib level for what our side compresses in the 12.x and 13.x cases: they send
#: hundreds of MB, and the level changes only CPU time, not what's on trial.
COMPRESS_LEVEL = 1

#: Summaries of the runs of this session, printed at the end (see conftest.py).
SUMMARIES: list[str] = []


def kosoku() -> str:
    """The kosoku executable next to this Python, or on PATH."""
    candidate = Path(sys.executable).with_name("kosoku")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("kosoku")
    if found is None:  # pragma: no cover - the test extra installs it
        raise RuntimeError("kosoku not found: pip install -e '.[test]'")
    return found


class KosokuOutput:
    """Drains a kosoku process's stderr in a thread; tells the address it listens on.

    kosoku binds the port it is given, 0 included, and prints
    ``fuzzingserver listening on ws://HOST:PORT`` once it listens: no port is
    picked ahead and bound later, so no other process can take it meanwhile.
    """

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self._stream = process.stderr
        self.lines: list[str] = []
        self._address: str | None = None
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for line in self._stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                if self._address is None and LISTENING in line:
                    self._address = line.split(LISTENING, 1)[1].strip()
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait_address(self, timeout: float = 30.0) -> str:
        """The ``ws://HOST:PORT`` kosoku listens on, once it says so."""
        with self._changed:
            self._changed.wait_for(lambda: self._address is not None or self._closed, timeout)
            if self._address is None:
                raise RuntimeError(
                    "kosoku didn't say where it listens within "
                    f"{timeout}s; its output: {self.lines}"
                )
            return self._address

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


#: What ``kosoku -m fuzzingserver`` prints to stderr once it listens.
LISTENING = "fuzzingserver listening on "


def load_report(outdir: Path) -> dict[str, dict[str, Any]]:
    """The per-case results of one run: case id -> {behavior, behaviorClose, ...}."""
    index = json.loads((outdir / "index.json").read_text())
    (agent,) = index.values()
    return dict(agent)


def failures(report: dict[str, dict[str, Any]]) -> list[str]:
    """Cases whose outcome isn't OK or INFORMATIONAL, with the reason kosoku gave."""
    failed = []
    for case_id in sorted(report, key=_case_key):
        result = report[case_id]
        if result["behavior"] in PASSING and result["behaviorClose"] in PASSING:
            continue
        failed.append(f"{case_id}: {result['behavior']}/{result['behaviorClose']}")
    return failed


def summarize(title: str, report: dict[str, dict[str, Any]]) -> str:
    """A table of outcome counts per category; also kept for the end of the session."""
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for case_id, result in report.items():
        category = case_id.split(".")[0]
        outcome = result["behavior"]
        if outcome in PASSING and result["behaviorClose"] not in PASSING:
            outcome = result["behaviorClose"]
        counts[category][outcome] += 1
    lines = [f"Autobahn: {title}: {len(report)} cases"]
    for category in sorted(counts, key=int):
        detail = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts[category].items()))
        lines.append(f"  {category:>2} {CATEGORIES.get(category, '?'):<30} {detail}")
    summary = "\n".join(lines)
    SUMMARIES.append(summary)
    return summary


def _case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def _option(flag: str, cases: Sequence[str]) -> list[str]:
    return [arg for case in cases for arg in (flag, case)]


def _selection(compression: bool, cases: Sequence[str] | None) -> list[str]:
    """kosoku's arguments for ``cases`` (None: all), less the deflate ones without it."""
    included = _option("-i", cases) if cases is not None else []
    return included + ([] if compression else _option("-x", COMPRESSION_CASES))


# -- our server, driven by kosoku's client -------------------------------------------------


def echo(connection: syncws.ServerConnection) -> None:
    for message in connection:
        connection.send(message)


def run_server_cases(
    outdir: Path, *, compression: bool, cases: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Serve an echo server and let ``kosoku -m fuzzingclient`` test it (``cases``: globs)."""
    with syncws.serve(
        echo,
        "127.0.0.1",
        0,
        extensions=[ServerPerMessageDeflateFactory(compress_level=COMPRESS_LEVEL)]
        if compression
        else [],
        max_size=MAX_SIZE,
        ping_interval=None,
    ) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            _run_fuzzing_client(
                [
                    kosoku(),
                    "-m",
                    "fuzzingclient",
                    f"127.0.0.1:{server.port}",
                    "-o",
                    str(outdir),
                    "-p",
                    str(PLAYERS),
                    *_selection(compression, cases),
                ]
            )
        finally:
            server.shutdown()
            thread.join()
    return load_report(outdir)


def _run_fuzzing_client(command: list[str]) -> None:
    """Run kosoku's client; once more if kosoku itself crashed (killed by a signal).

    kosoku aborted (SIGABRT, no output) once in CI on a deflate sample that
    passed 40 times in a row here: a crash of the tool, not a verdict on us.
    A second crash fails, and so does any exit code kosoku chooses itself;
    the cases' outcomes are judged from the reports either way.
    """
    for attempt in (1, 2):
        result = subprocess.run(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        if result.returncode >= 0 or attempt == 2:
            break
        print(
            f"kosoku died with signal {-result.returncode}; running it once more. "
            f"Its last words: {result.stderr[-2000:]!r}",
            file=sys.stderr,
        )
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, command, stderr=result.stderr[-4000:]
        )


# -- our client, against kosoku's server -----------------------------------------------------


@contextlib.contextmanager
def fuzzing_server(
    outdir: Path, selection: list[str]
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run ``kosoku -m fuzzingserver`` on a port of its own; yield its base URI and process."""
    with subprocess.Popen(
        [kosoku(), "-m", "fuzzingserver", "127.0.0.1:0", "-o", str(outdir), *selection],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        output = KosokuOutput(process)
        try:
            yield output.wait_address(), process
        finally:
            process.terminate()
            process.wait(30)
            output.join(30)


#: In these 13.x categories the test server asks our client not to use context
#: takeover, and accepts only an offer that allows it (client_no_context_takeover).
NO_CONTEXT_TAKEOVER_CATEGORIES = ("13.2", "13.5", "13.6")


def run_client_cases(
    outdir: Path, *, compression: bool, cases: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Play every case (or those ``cases`` select) with our client against kosoku's server.

    A few 13.x categories need the client to make another deflate offer:
    they run in a batch of their own, with that offer; the reports are merged.
    """
    if not compression:
        return _run_client_batch(outdir / "all", _selection(False, cases), compression=None)
    special = [f"{category}.*" for category in NO_CONTEXT_TAKEOVER_CATEGORIES]
    report = _run_client_batch(
        outdir / "default-offer",
        _selection(True, cases) + _option("-x", special),
        extensions=[ClientPerMessageDeflateFactory(compress_level=COMPRESS_LEVEL)],
    )
    if cases is not None:
        special = [case for case in cases if case.startswith(NO_CONTEXT_TAKEOVER_CATEGORIES)]
    if special:
        report |= _run_client_batch(
            outdir / "no-context-takeover-offer",
            _option("-i", special),
            extensions=[
                ClientPerMessageDeflateFactory(
                    client_no_context_takeover=True, compress_level=COMPRESS_LEVEL
                )
            ],
        )
    return report


def _run_client_batch(
    outdir: Path, selection: list[str], **options: Any
) -> dict[str, dict[str, Any]]:
    options |= {"max_size": MAX_SIZE, "ping_interval": None}
    with fuzzing_server(outdir, selection) as (base, process):
        with syncws.connect(f"{base}/getCaseCount", **options) as connection:
            count = int(connection.recv(30))
        cases = iter(range(1, count + 1))
        lock = threading.Lock()

        def play() -> None:
            while True:
                with lock:
                    case = next(cases, None)
                if case is None:
                    return
                play_case(f"{base}/runCase?case={case}&agent=syncws", options)

        players = [threading.Thread(target=play) for _ in range(PLAYERS)]
        for player in players:
            player.start()
        for player in players:
            player.join()
        with syncws.connect(f"{base}/updateReports?agent=syncws", **options) as connection:
            connection.wait_closed(60)
        wait_for_report(outdir, process)
    return load_report(outdir)


def play_case(uri: str, options: dict[str, Any]) -> None:
    """Echo every message of one case until the server closes."""
    try:
        with syncws.connect(uri, **options) as connection:
            for message in connection:
                connection.send(message)
    except (syncws.ConnectionClosed, syncws.InvalidHandshake, OSError):
        pass  # kosoku judges; a failed case shows in its report


def wait_for_report(outdir: Path, process: subprocess.Popen[str]) -> None:
    """Wait until kosoku has written all of index.json (it does so just after updateReports).

    The file appears before it is complete: wait until it parses, not just exists.
    """
    deadline = time.monotonic() + 60
    index = outdir / "index.json"
    while True:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            json.loads(index.read_text())
            return
        if time.monotonic() > deadline or process.poll() is not None:
            raise FileNotFoundError(f"kosoku wrote no complete index.json in {outdir}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.05)
