"""Issue 37's public page (and the TA page's "Possible copies") in headless chromium, like
``tests/test_ranking_page_browser.py``: no console message (nothing blocked, nothing run), and the
rendered DOM shows the pseudonyms in the course's order and none of the students' ids or file names."""
from __future__ import annotations

from html.parser import HTMLParser

from labkit.grading.public_page import pseudonym, write_public_page
from labkit.grading.ranking_page import write_ranking_page
from tests.helpers import requires
from tests.test_public_page import SECRET, batch
from tests.test_ranking_page import HOSTILE, parse
from tests.test_ranking_page_browser import CHROMIUM, chromium, console_messages, expected_ids, hostile_rows

pytestmark = requires(CHROMIUM is not None, "no chromium on PATH: install it with `apt-get install -y chromium` "
                                             "(.ci/run does when root)")


def visible_text(dom: str) -> str:
    """The text a reader sees: every text node outside <style> and <title>, joined by newlines."""
    class Text(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.parts, self.hidden = [], 0

        def handle_starttag(self, tag, attrs):
            self.hidden += tag in ("style", "title")

        def handle_endtag(self, tag):
            self.hidden -= tag in ("style", "title")

        def handle_data(self, data):
            if not self.hidden:
                self.parts.append(data)
    parser = Text()
    parser.feed(dom)
    return "\n".join(parser.parts)


def test_the_public_page_renders_pseudonyms_in_order_and_no_id(tmp_path):
    rows = batch() + hostile_rows()
    page = write_public_page(rows, "pruning", tmp_path / "public.html", secret=SECRET)
    result = chromium(page, tmp_path, "--dump-dom")
    assert console_messages(result.stderr) == []
    dom = parse(result.stdout)
    assert "script" not in {tag for tag, _ in dom.tags}
    qualified = {}
    for row in rows:  # each qualifying student's best sparsity
        if row["exit_code"] == 0 and "sparsity" in row["metrics"]:
            qualified[row["id"]] = max(qualified.get(row["id"], 0.0), row["metrics"]["sparsity"])
    order = sorted(qualified, key=lambda student: (-qualified[student], pseudonym(student, SECRET)))
    assert [cells[1] for cells in dom.tables["ranking"]] == [pseudonym(student, SECRET) for student in order]
    shown = visible_text(result.stdout)
    assert all(pseudonym(student, SECRET) in shown for student in order)
    cells = {cell for cells in dom.tables["ranking"] for cell in cells}
    for row in rows:
        for leak in {row["id"], *expected_ids([row]), row["file"], row["file"].rsplit("/", 1)[-1], row["message"]}:
            assert leak not in cells and (len(leak) < 4 or leak not in shown), f"{leak!r} is on the rendered page"
            assert len(leak) < 4 or leak not in result.stdout, f"{leak!r} is in the rendered page's DOM"


def test_possible_copies_with_hostile_names_render_as_text(tmp_path):
    similar = [{"task": "pruning", "a_id": name, "a_file": f"{name}_pruning.pt", "b_id": "b", "b_file": name,
                "kind": "identical weights", "figure": 1.0, "detail": name} for name in HOSTILE]
    page = write_ranking_page(hostile_rows(), "pruning", tmp_path / "ranking.html", similar=similar)
    result = chromium(page, tmp_path, "--dump-dom")
    assert console_messages(result.stderr) == []
    table = parse(result.stdout).tables["similar"]
    assert [cells[1] for cells in table] == expected_ids([{"id": name} for name in HOSTILE])
