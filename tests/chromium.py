"""Headless Chromium (Debian's `chromium`) for the tests of HTML pages: a screenshot, and the laid-out page's
figures read back by a script run on a copy of the page (the pages themselves hold no script)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    # Never a skip: the Makefile's `deps` installs it.
    assert found, "chromium is not installed (Debian package `chromium`; `make deps` installs it as root)"
    return found


def _run(page: Path, work: Path, width: int, height: int, *what: str) -> subprocess.CompletedProcess:
    work.mkdir(parents=True, exist_ok=True)
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--disable-component-update",
            f"--user-data-dir={work / 'profile'}", f"--window-size={width},{height}", *what, page.resolve().as_uri()]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def screenshot(page: Path, png: Path, width: int = 1400, height: int = 1000) -> np.ndarray:
    """The page drawn in a `width` x `height` window: an array of RGB 0..255, rows x columns x 3."""
    import matplotlib.image

    _run(page, png.parent / "chromium", width, height, f"--screenshot={png}")
    rgb = matplotlib.image.imread(str(png))[:, :, :3]
    return (rgb * 255).round().astype(np.int16) if rgb.dtype != np.uint8 else rgb.astype(np.int16)


def page_width(page: Path, work: Path, width: int = 1400) -> int:
    """The laid-out width (document scrollWidth) of `page` in a `width`-pixel window: more than `width`
    means the page overflows sideways."""
    work.mkdir(parents=True, exist_ok=True)
    probe = work / ("probe-" + page.name)
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", '<script>document.body.setAttribute("data-scroll-width", '
                                              'document.documentElement.scrollWidth)</script></body>'), encoding="utf-8")
    dom = _run(probe, work / "chromium", width, 900, "--dump-dom").stdout
    m = re.search(r'data-scroll-width="(\d+)"', dom)
    assert m, dom[-2000:]
    return int(m.group(1))


def inner_texts(page: Path, work: Path, selectors: list[str], width: int = 1400) -> list[str]:
    """The text Chromium lays out (innerText) for the first element of each CSS selector in `page`, "" where none
    matches: what a reader of the page sees, read on a copy of the page with a script added."""
    import json

    work.mkdir(parents=True, exist_ok=True)
    probe = work / ("text-" + page.name)
    script = ("<script>document.body.setAttribute('data-texts', JSON.stringify("
              + json.dumps(selectors) + ".map(s => { const e = document.querySelector(s); "
              "return e ? e.innerText : ''; })))</script></body>")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", script), encoding="utf-8")
    dom = _run(probe, work / "chromium", width, 900, "--dump-dom").stdout
    m = re.search(r'data-texts="([^"]*)"', dom)
    assert m, dom[-2000:]
    import html

    return json.loads(html.unescape(m.group(1)))


def line_counts(page: Path, work: Path, selectors: list[str], width: int = 1400) -> list[int]:
    """How many lines Chromium lays out the text of the first element of each CSS selector in (the line boxes
    of its contents), 0 where none matches: a cell whose number or verdict wraps ("FAI" / "L") has 2."""
    import json

    work.mkdir(parents=True, exist_ok=True)
    probe = work / ("lines-" + page.name)
    script = ("<script>document.body.setAttribute('data-lines', JSON.stringify("
              + json.dumps(selectors) + ".map(s => { const e = document.querySelector(s); if (!e) return 0; "
              "const r = document.createRange(); r.selectNodeContents(e); "
              "return new Set(Array.from(r.getClientRects()).map(b => Math.round(b.top))).size; })))</script></body>")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", script), encoding="utf-8")
    dom = _run(probe, work / "chromium", width, 900, "--dump-dom").stdout
    m = re.search(r'data-lines="([^"]*)"', dom)
    assert m, dom[-2000:]
    return json.loads(m.group(1))
