"""Take docs/_static/demo.png: the demo chat in headless Chromium, with a short conversation.

    python docs/screenshot.py [OUTPUT]

Run it from a checkout, with Chromium installed (Debian: ``apt-get install
chromium``): it serves the demo in-process, as ``python -m syncws serve --demo``
does, and drives two pages with the DevTools driver of the interop tests
(``tests/interop/chromium.py``). The pages' random guest names are fixed, so
that the picture only changes when the page does.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from syncws.cli.serve import DemoChat  # noqa: E402
from syncws.testing import run_server  # noqa: E402
from tests.interop.chromium import Chromium  # noqa: E402
from tests.interop.demo_page import join, lines, online, say  # noqa: E402

OUTPUT = ROOT / "docs" / "_static" / "demo.png"
WIDTH, HEIGHT = 800, 520

#: Who says what; the first page is the one in the picture.
CONVERSATION = [
    (1, "Hi! Is this server really Python with threads?"),
    (0, "It is: one thread per connection, no async, no await."),
    (1, "And a slow page doesn't hold up the others?"),
    (0, "No: broadcast() never blocks. Open a second tab and say hello!"),
]


def take(chromium: Chromium, url: str) -> bytes:
    """The demo at ``url`` after a short conversation between two pages, as PNG."""
    pages = []
    try:
        for index, random in enumerate((0.4131, 0.8249)):
            page, _ = join(
                chromium,
                url,
                online=index + 1,
                width=WIDTH,
                height=HEIGHT,
                before_load=f"Math.random = () => {random};",
            )
            pages.append(page)
        online(pages[0], 2)
        for count, (who, text) in enumerate(CONVERSATION, 1):
            say(pages[who], text)
            for page in pages:
                lines(page, count)
        return pages[0].screenshot()
    finally:
        for page in pages:
            page.close()


def main() -> int:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT
    chat = DemoChat()
    with (
        run_server(chat.handler, process_request=chat.process_request) as server,
        Chromium.launch() as chromium,
    ):
        png = take(chromium, server.uri.replace("ws://", "http://"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(png)
    print(f"wrote {output} ({len(png)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
