"""Issue 16's ranking page in a real headless browser (Debian's ``chromium``; skipped without it).

The page has no script, so any message on the browser's console is a problem: a resource the
Content-Security-Policy blocked (a URL that slipped in), an inline script or event handler that an
unescaped name would smuggle in, a JS error. ``--enable-logging=stderr`` prints each one as a
``CONSOLE`` line; ``test_the_console_check_catches_what_an_unescaped_name_smuggles_in`` shows the
check failing on such a page, so a clean console on the real page means something.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from labkit.grading import ranking_page
from labkit.grading.ranking_page import write_ranking_page
from tests.helpers import requires
from tests.test_ranking_page import HOSTILE, make_row, parse

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = requires(CHROMIUM is not None, "no chromium on PATH: install it with `apt-get install -y chromium` "
                                             "(.ci/run does when root)")
CONSOLE = re.compile(r":CONSOLE[:(]")  # chromium's console lines: INFO:CONSOLE:2] "..." or CONSOLE(2)


def chromium(page, tmp_path, *arguments: str) -> subprocess.CompletedProcess:
    """Run headless chromium on ``page`` (a file) with its console logged to stderr."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", "--no-first-run", "--disable-extensions",
               "--disable-background-networking", "--disable-dev-shm-usage", *arguments, page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


def hostile_rows() -> list[dict]:
    """Qualifiers with hostile names (their order known), one below goal, one invalid, one timeout."""
    rows = [make_row(name, file=f"subs/{name}_pruning.pt", message=name, accuracy=91.0, sparsity=60.0 + 5 * i)
            for i, name in enumerate(HOSTILE)]
    rows += [make_row("low", code=1, accuracy=80.0, sparsity=95.0, message="Oops! Something is wrong!"),
             make_row("bad", code=2, message="Failed to load your model!\n" + "<script>" * 50),
             make_row("hang", status="timeout", code=124, message="timed out after 60 s")]
    return sorted(rows, key=lambda row: (row["id"], row["file"]))  # the batch grader's order


def expected_ids(rows: list[dict]) -> list[str]:
    """The ids as the page shows them (the bidi override made visible)."""
    return [row["id"].replace("\u202e", "\\u202e") for row in rows]


def test_the_page_loads_without_console_messages_and_its_tables_are_in_order(tmp_path):
    rows = hostile_rows()
    page = write_ranking_page(rows, "pruning", tmp_path / "ranking.html")
    result = chromium(page, tmp_path, "--dump-dom")
    assert console_messages(result.stderr) == []
    dom = parse(result.stdout)
    assert "script" not in {tag for tag, _ in dom.tags}
    assert [cells[1] for cells in dom.tables["submissions"]] == expected_ids(rows)
    by_sparsity = sorted((row for row in rows if row["exit_code"] == 0), key=lambda row: -row["metrics"]["sparsity"])
    assert [cells[1] for cells in dom.tables["ranking"]] == expected_ids(by_sparsity)


def test_the_console_check_catches_what_an_unescaped_name_smuggles_in(tmp_path, monkeypatch):
    monkeypatch.setattr(ranking_page.html, "escape", lambda value, quote=True: value)  # the bug: no escaping
    page = write_ranking_page(hostile_rows(), "pruning", tmp_path / "unescaped.html")
    messages = console_messages(chromium(page, tmp_path, "--dump-dom").stderr)
    assert messages and any("Content Security Policy" in line for line in messages), messages


def test_the_console_check_catches_a_blocked_resource(tmp_path):
    page = write_ranking_page(hostile_rows(), "pruning", tmp_path / "ranking.html")
    page.write_text(page.read_text().replace("</body>", '<img src="http://127.0.0.1:9/x.png"></body>'))
    messages = console_messages(chromium(page, tmp_path, "--dump-dom").stderr)
    assert any("img-src" in line for line in messages), messages


def test_a_screenshot_of_the_page_is_written_and_not_blank(tmp_path):
    from PIL import Image

    page = write_ranking_page(hostile_rows(), "pruning", tmp_path / "ranking.html")
    screenshot = tmp_path / "ranking.png"
    result = chromium(page, tmp_path, f"--screenshot={screenshot}", "--window-size=1280,1800")
    assert console_messages(result.stderr) == []
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(screenshot) as image:
        assert image.size == (1280, 1800)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 50, "the screenshot is (nearly) one colour: the page did not render"
    print(f"screenshot: {screenshot} ({screenshot.stat().st_size} bytes, {len(colours)} colours)")
