"""The HTML report drawn by headless Chromium: short periods get figures with data (finer bins, a time axis),
both PUE measures are plotted and in the headline, the summary is tables, and nothing is fetched."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chromium import page_width, screenshot
from report_support import synthetic_year, write_site
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.report.engine import figure_step_ns
from puewatch.core.timefmt import NS, parse_time

RUN = [sys.executable, "-m", "puewatch.cli"]
# matplotlib's first two colours (the PUE and PUE-joint lines; facility and IT energy) and the
# colour scale's "observed all the bin" end.
BLUE, ORANGE, GREEN = (31, 119, 180), (255, 127, 14), (0, 104, 55)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    store = EmbeddedStore(tmp / "store.sqlite", synchronous="NORMAL")
    store.write(synthetic_year(start="2025-03-01", end="2025-03-03").lines)
    store.close()
    return write_site(tmp, store_path=str(tmp / "store.sqlite"))


def _near(img: np.ndarray, colour: tuple[int, int, int], tol: int = 40) -> int:
    return int((np.abs(img - np.array(colour)).sum(axis=2) < tol).sum())


def _figures(page: Path) -> list[str]:
    return re.findall(r"<figure><figcaption>(.*?)</figcaption>(<svg.*?</svg>)\s*</figure>", page.read_text(), re.S)


@pytest.mark.parametrize(("start", "end", "step", "bins"), [
    ("2025-03-01T10:00:00Z", "2025-03-01T16:00:00Z", "15 min", 24),
    ("2025-03-01", "2025-03-02", "1 hour", 24),
    ("2025-03-01T10:00:00Z", "2025-03-01T10:30:00Z", "1 min", 30),
])
def test_a_short_period_s_figures_hold_data_in_chromium(site: Path, tmp_path: Path, start: str, end: str, step: str,
                                                        bins: int) -> None:
    page = tmp_path / "report.html"
    out = subprocess.run([*RUN, "report", "--config", str(site), "--from", start, "--to", end, "--format", "html",
                          "--target", "1.45", "-o", str(page)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = page.read_text()
    # Self-contained: nothing to fetch, no script.
    assert "<script" not in text and not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    # Both PUE measures in the headline, the summary as tables (no preformatted terminal text).
    pue = re.search(r'<b id="pue">([0-9.]+)</b>', text)
    pue_joint = re.search(r'<b id="pue_joint">([0-9.]+)</b>', text)
    assert pue and pue_joint and 1.3 < float(pue.group(1)) < 1.7 and 1.3 < float(pue_joint.group(1)) < 1.7
    assert "<pre" not in text and text.count("<table>") == 4 and "<caption>meters</caption>" in text
    figures = _figures(page)
    assert [caption.split(" by ")[0].split(" (")[0] for caption, _ in figures] == [
        f"PUE per {step}", f"Mean power per {step}", f"Completeness per meter and {step}"]
    assert (parse_time(end) - parse_time(start)) // figure_step_ns(parse_time(start), parse_time(end)) == bins
    # Both PUE series are plotted, one marker per bin each; the time axis is the period's (no year ticks).
    pue_svg = figures[0][1]
    assert "PUE, jointly observed time" in pue_svg and "PUE (E_DC / E_IT of the bin)" in pue_svg
    assert pue_svg.count("<use ") >= 2 * bins, pue_svg.count("<use ")
    assert not re.search(r">(2025|2026|2027|2028|2029)<", pue_svg)
    # Each figure alone, drawn by Chromium: its data is on the screen.
    for k, (caption, svg) in enumerate(figures):
        alone = tmp_path / f"figure{k}.html"
        alone.write_text(f'<!DOCTYPE html><html><body style="margin:0;background:#fff">{svg}</body></html>')
        img = screenshot(alone, tmp_path / f"figure{k}.png", 1100, 700)
        if k < 2:
            assert _near(img, BLUE) > 300 and _near(img, ORANGE) > 300, (caption, _near(img, BLUE), _near(img, ORANGE))
        else:  # every meter observed all the time: the map is green, with a colour bar beside it
            assert _near(img, GREEN, 60) > 50_000, caption
            assert "share of the bin observed" in svg and "100 %" in svg
    # The whole page in a 1400-pixel window: it fits, and it is drawn.
    assert page_width(page, tmp_path) <= 1400
    img = screenshot(page, tmp_path / "page.png", 1400, 2400)
    assert _near(img, BLUE) > 300 and _near(img, GREEN, 60) > 10_000


def test_figure_bins_suit_the_period() -> None:
    day = 86_400 * NS
    assert figure_step_ns(0, 365 * day) == day and figure_step_ns(0, 12 * day) == day
    assert figure_step_ns(0, 2 * day) == 3600 * NS and figure_step_ns(0, 6 * 3600 * NS) == 900 * NS
    assert figure_step_ns(0, 600 * NS) == 10 * NS and figure_step_ns(0, 30 * NS) == 10 * NS
