"""Fail unless the protocol core is fully covered and each I/O or pub/sub module is at 90%+.

Reads the ``.coverage`` data that ``python -m pytest`` (pytest-cov) left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

FLOORS = {"syncws/protocol/": 100.0, "syncws/threaded/": 90.0, "syncws/pubsub/": 90.0}


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "coverage.json"
        subprocess.run(
            [sys.executable, "-m", "coverage", "json", "-q", "-o", str(report)], check=True
        )
        files = json.loads(report.read_text())["files"]
    failed = False
    for path, data in sorted(files.items()):
        for prefix, floor in FLOORS.items():
            if path.startswith(prefix):
                percent = data["summary"]["percent_covered"]
                status = "ok" if percent >= floor else f"BELOW {floor:g}%"
                print(f"{path:<40} {percent:6.2f}%  {status}")
                failed |= percent < floor
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
