"""report.html in a real browser: a run's and a comparison's page opened in headless Chromium at
phone (390 px) and desktop (1280 px) widths. The page must not scroll sideways (a wide table
scrolls in its own box), every embedded picture must decode, and the console must stay clean.

Chromium is Debian's package, which `make browser` installs (CI's .ci/run does, and sets
KCNN_REQUIRE_BROWSER=1 so that a missing browser fails there); a test never installs it. Without
it the test skips and says how to get it. The page itself has no
script: a copy of it gets a small one at the top of <head> that records errors as they happen and,
once the page has loaded, writes its measurements into the DOM that `--dump-dom` prints.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

WIDTHS = {"phone": 390, "desktop": 1280}
TINY = ["--epochs", "1", "--limit", "60", "--batch-size", "16"]

PROBE = """<script>
window.kcnnErrors = [];
window.addEventListener("error", (e) => {
  const where = e.target && e.target !== window ? (e.target.src || e.target.tagName) : "";
  window.kcnnErrors.push(String(e.message || "failed to load " + where));
}, true);
const kcnnConsoleError = console.error;
console.error = (...args) => { window.kcnnErrors.push(args.join(" ")); kcnnConsoleError(...args); };
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const found = {
    viewport: document.documentElement.clientWidth,
    width: document.documentElement.scrollWidth,
    images: images.length,
    broken: images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.alt),
    errors: window.kcnnErrors,
  };
  const out = document.createElement("pre");
  out.id = "kcnn-probe";
  out.textContent = JSON.stringify(found);
  window.parent.document.body.appendChild(out);  // the frame around: what --dump-dom prints
});
</script>"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium on this machine's PATH: `make browser` installs it."""
    found = _chromium()
    if found:
        return found
    why = "no Chromium on PATH: `make browser` installs it (Debian's package, with apt-get)"
    if os.environ.get("KCNN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{why}; KCNN_REQUIRE_BROWSER=1 asks for it (.ci/run installs it first)")
    pytest.skip(why)


def _open(chromium: str, page: Path, width: int, tmp: Path) -> dict:
    """The measurements the probe took of `page` laid out `width` CSS pixels wide.

    A desktop browser window is never narrower than 500 px, so the page is shown in an iframe of
    exactly `width` (its `srcdoc`: the same origin as the frame around it, which the probe writes
    its results into), as a phone's browser lays out a page with `width=device-width`.
    """
    source = page.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1)
    frame = tmp / f"frame-{width}-{page.parent.name}.html"
    frame.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin:0">'
        f'<iframe style="width:{width}px;height:900px;border:0" '
        f'srcdoc="{html.escape(source, quote=True)}"></iframe></body></html>',
        encoding="utf-8",
    )
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # root in a container: Chromium's sandbox needs a user namespace
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={tmp / 'profile'}",
            f"--window-size={width + 100},1000",
            "--virtual-time-budget=10000",  # every image decoded and `load` run before the dump
            "--dump-dom",
            frame.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="kcnn-probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"Chromium printed no measurements (exit {done.returncode}): {done.stderr[-800:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """A compare-apis comparison of LeNet-5 on digits (three runs inside it), one of its runs
    visualised (so its page has every kind of picture), and a `kcnn compare` of two of them."""
    from kcnn.cli import main

    out = tmp_path_factory.mktemp("runs")

    def kcnn(*args) -> None:
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            assert not e.code, f"kcnn {' '.join(map(str, args))} exited {e.code}"

    kcnn("compare-apis", "lenet5", "--dataset", "digits", *TINY, "--out", out)
    (comparison,) = [p for p in out.iterdir() if p.is_dir()]
    runs = sorted(p for p in comparison.iterdir() if (p / "report.html").is_file())
    kcnn("visualize", runs[0])
    kcnn("compare", runs[0], runs[1], "--out", out / "compared")
    (compared,) = (out / "compared").iterdir()
    return {
        "run": runs[0] / "report.html",
        "comparison": comparison / "report.html",
        "compared": compared / "report.html",
    }


@pytest.mark.slow  # trains three tiny runs, opens six pages
def test_reports_render_at_phone_and_desktop_widths(chromium, reports, tmp_path):
    """No sideways scrolling, every picture decoded, no console error, for each report at each
    width; and a comparison's links lead to its runs' own reports."""
    problems = []
    for (kind, page), (device, width) in [(r, w) for r in reports.items() for w in WIDTHS.items()]:
        found = _open(chromium, page, width, tmp_path)
        where = f"{kind} report at {device} width ({width} px)"
        if found["viewport"] > width:
            problems.append(f"{where}: the browser drew a {found['viewport']} px wide viewport")
        if found["width"] > found["viewport"]:
            problems.append(f"{where}: {found['width']} px wide, scrolls sideways")
        if found["images"] == 0 or found["broken"]:
            problems.append(f"{where}: images {found['images']}, broken {found['broken']}")
        if found["errors"]:
            problems.append(f"{where}: console errors {found['errors']}")
    assert not problems, "\n".join(problems)
    links = re.findall(r'href="([^"]+)"', reports["comparison"].read_text(encoding="utf-8"))
    assert len(links) == 3
    for link in links:
        assert (reports["comparison"].parent / link).is_file(), link
