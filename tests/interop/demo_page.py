"""The demo chat's page (``syncws/cli/demo.html``) as a person uses it, in ``Chromium``.

Shared by ``test_demo.py`` and ``docs/screenshot.py``. Every wait is for the
document to change (``Page.wait_for``).
"""

from __future__ import annotations

from typing import Any

from .chromium import Chromium, Page

#: The chat's lines in a page: ``[mine?, name, text]`` for each.
LINES = """[...document.querySelectorAll('#log .msg')].map((line) => [
  line.classList.contains('mine'),
  line.querySelector('.name').textContent.replace(/:$/, ''),
  line.querySelector('.text').textContent,
])"""


def join(chromium: Chromium, url: str, online: int, **options: Any) -> tuple[Page, str]:
    """Open the demo in a new tab; wait until it shows ``online`` people; return it and its name.

    ``options`` go to ``Chromium.new_page()``.
    """
    page = chromium.new_page(url, **options)
    try:
        status = page.wait_for(
            "document.getElementById('status').textContent"
            f".match(/^you are (\\S+) · {online} online$/)"
        )
    except BaseException:
        page.close()
        raise
    return page, status[1]


def say(page: Page, text: str) -> None:
    """Type a message in the page's box and press Enter."""
    page.evaluate("document.getElementById('text').focus()")
    page.type(text)
    page.press_enter()


def lines(page: Page, count: int) -> list[list[object]]:
    """The page's chat lines, once it shows at least ``count`` of them."""
    found: list[list[object]] = page.wait_for(f"(({LINES}).length >= {count}) && {LINES}")
    return found


def online(page: Page, count: int) -> None:
    """Wait until the page says ``count`` people are online."""
    page.wait_for(f"document.getElementById('status').textContent.endsWith('· {count} online')")
