"""Issue 16's ranking page, from rows built here (no check runs, except the one end-to-end test):
the course's order among qualifiers per task, escaping of hostile names and messages, no URL of any
kind, one row per submission, a plot with labelled axes and goal lines, and ``grade --html``."""
from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser

import pytest

from labkit.grading import ranking_page
from labkit.grading.grade_class import build_parser
from labkit.grading.grade_class import main as grade_main
from labkit.grading.ranking_page import CONTENT_SECURITY_POLICY, page_html, write_ranking_page
from labkit.grading.tasks import TASKS

HOSTILE = ['<script>alert("id")</script>', '"onerror=alert(1) x="', "<img src=x onerror=alert(2)>",
           "</td></tr></table><h1>owned</h1>", "a\u202egpj.pt"]


def make_row(student: str, *, code: int = 0, status: str = "ok", message: str = "", file: str = "",
             **metrics) -> dict:
    """One row as the batch grader writes it."""
    return {"id": student, "file": file or f"subs/{student}_x.pt", "status": status, "exit_code": code,
            "passed": code == 0, "metrics": metrics, "message": message or f"verdict of {student}",
            "seconds": 1.5}


class Tables(HTMLParser):
    """Every start tag with its attributes, and the cell texts of each table's body rows, by table id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.tables, self._table, self._row, self._cell = [], {}, None, None, None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:  # header rows have th cells only
                self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> Tables:
    parser = Tables()
    parser.feed(page)
    parser.close()
    return parser


def column(page: str, table: str, index: int) -> list[str]:
    """One column of a table's body rows (1 = student id in both tables)."""
    return [row[index] for row in parse(page).tables[table]]


def test_pruning_ranks_qualifiers_by_sparsity_higher_first():
    rows = [make_row("a", accuracy=91.0, sparsity=60.0), make_row("b", accuracy=90.2, sparsity=93.0),
            make_row("c", accuracy=92.0, sparsity=75.5),
            make_row("d", code=1, accuracy=80.0, sparsity=99.0)]  # below the accuracy goal: not ranked
    page = page_html(rows, "pruning")
    assert column(page, "ranking", 1) == ["b", "c", "a"]
    assert column(page, "ranking", 0) == ["1", "2", "3"]


def test_quantization_ranks_by_accuracy_higher_first():
    rows = [make_row("a", accuracy=90.5), make_row("b", accuracy=92.1), make_row("c", accuracy=91.0),
            make_row("d", code=2, message="Your model's architecture seems to be wrong!")]
    assert column(page_html(rows, "quantization"), "ranking", 1) == ["b", "c", "a"]


def test_task2_ranks_by_fom_lower_first_and_task1_is_not_ranked():
    rows = [make_row("a", file="a_model_task2.pth", miou=0.70, fom=3.1e26),
            make_row("b", file="b_model_task2.pth", miou=0.67, fom=9.0e25),
            make_row("c", file="c_model_task2.pth", miou=0.69, fom=1.2e27),
            make_row("t1", file="t1_model_task1.pth", miou=0.80)]  # Task 1: graded, no FoM
    page = page_html(rows, "efficient")
    assert column(page, "ranking", 1) == ["b", "a", "c"]
    ranks = dict(zip(column(page, "submissions", 1), column(page, "submissions", 4)))
    assert ranks["b"] == "1" and "Task 2" in ranks["t1"]


def test_the_direction_is_read_from_the_tasks_table(monkeypatch):
    rows = [make_row("a", accuracy=91.0, sparsity=60.0), make_row("b", accuracy=91.0, sparsity=90.0)]
    flipped = dataclasses.replace(TASKS["pruning"].ranking, higher_is_better=False)
    monkeypatch.setitem(TASKS, "pruning", dataclasses.replace(TASKS["pruning"], ranking=flipped))
    assert column(page_html(rows, "pruning"), "ranking", 1) == ["a", "b"]


def test_ties_share_a_rank_and_are_listed_by_id_whatever_the_input_order():
    rows = [make_row("c", accuracy=91.0), make_row("a", accuracy=91.0), make_row("b", accuracy=93.0),
            make_row("d", accuracy=90.0)]
    page = page_html(rows, "quantization")
    assert column(page, "ranking", 1) == ["b", "a", "c", "d"]
    assert column(page, "ranking", 0) == ["1", "2", "2", "4"]


def test_every_submission_gets_one_row_in_the_batch_order_with_its_verdict_and_message():
    rows = [make_row("a", accuracy=91.0, sparsity=60.0, message="Congratulations!"),
            make_row("b", code=1, accuracy=85.0, sparsity=60.0, message="which is too low!"),
            make_row("c", code=2, message="Failed to load your model!"),
            make_row("d", status="timeout", code=124, message="timed out after 60 s"),
            make_row("e", status="crashed", code=-9, message="the check ended without a verdict"),
            make_row("f", status="skipped", code=None, message="not graded: a symbolic link")]
    table = parse(page_html(rows, "pruning")).tables["submissions"]
    assert [cells[1] for cells in table] == ["a", "b", "c", "d", "e", "f"]
    assert [cells[3] for cells in table] == ["passed", "below goal", "invalid submission", "timeout",
                                             "crashed", "skipped"]
    assert [cells[6] for cells in table] == [row["message"] for row in rows]
    assert len(parse(page_html(rows, "pruning")).tables["ranking"]) == 1


def test_student_strings_are_escaped_and_long_ones_capped():
    rows = [make_row(name, file=f"subs/{name}_pruning.pt", message=name, accuracy=91.0, sparsity=70.0 + i)
            for i, name in enumerate(HOSTILE)]
    rows.append(make_row("long", message="x" * 1_000_000, file="y" * 100_000 + ".pt", accuracy=91.0, sparsity=60.0))
    page = page_html(rows, "pruning")
    parsed = parse(page)
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "b", "br", "span", "table",
               "thead", "tbody", "tr", "th", "td", "svg", "rect", "line", "circle", "text"}
    assert {tag for tag, _ in parsed.tags} <= allowed
    assert not [name for _, attrs in parsed.tags for name in attrs if name.startswith("on")]
    ids = [cells[1] for cells in parsed.tables["submissions"]]
    assert ids[: len(HOSTILE) - 1] == HOSTILE[:-1]           # shown as the text they are
    assert "a\\u202egpj.pt" in ids                            # the bidi override made visible
    assert len(page) < 50_000                                 # the 1.1 MB of text was capped


def test_undecodable_file_names_do_not_break_the_page(tmp_path):
    name = b"caf\xe9_pruning.pt".decode("utf-8", "surrogateescape")  # how Python lists a latin-1 name
    path = write_ranking_page([make_row("caf", file=name, code=2)], "pruning", tmp_path / "ranking.html")
    assert "caf\\udce9_pruning.pt" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_the_page_names_no_url_and_carries_the_policy(task):
    rows = [make_row("a", accuracy=91.0, sparsity=60.0, miou=0.7, fom=1e26, dice=0.9),
            make_row("b", code=2, message="see https://example.com/help")]
    page = page_html(rows, task)
    without_students = page.replace("see https://example.com/help", "")
    assert not re.search(r"://|\burl\(|@import|\b(src|href|action|xlink:href)=", without_students, re.I)
    assert f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">' in page
    assert "<script" not in page and "<link" not in page


def test_the_plot_has_labelled_axes_a_point_per_graded_row_and_the_goal_lines():
    rows = [make_row("a", accuracy=91.0, sparsity=60.0), make_row("b", code=1, accuracy=85.0, sparsity=70.0),
            make_row("c", code=2)]
    svg = ranking_page.plot_svg(rows, "pruning")
    assert "sparsity (%)" in svg and "test accuracy (%)" in svg
    assert svg.count('class="goal"') == 2 and svg.count('class="point"') == 2
    task2 = ranking_page.plot_svg([make_row("a", miou=0.7, fom=1e26), make_row("b", miou=0.68, fom=4e27)],
                                  "efficient")
    assert "mIoU" in task2 and "FoM" in task2 and task2.count('class="goal"') == 1


def test_the_page_says_task_date_file_count_and_what_was_trusted():
    sandbox = {"isolation": "bubblewrap", "trust_boundary": "Trusted: this grading process."}
    rows = [make_row("a", file="a_model_task2.pth", miou=0.7, fom=1e26, sandbox=sandbox), make_row("b", code=2)]
    page = page_html(rows, "efficient")
    meta = page[page.index('id="meta"'):page.index('id="trust"') + 200]
    assert "efficient" in meta and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", meta)
    assert '<span id="file-count">2</span>' in meta and "bubblewrap (1)" in meta and "Trusted:" in meta


def test_html_is_off_by_default(tmp_path):
    assert build_parser().parse_args([str(tmp_path), "--task", "pruning"]).html is None


def test_grade_html_writes_the_page_from_real_checks(tmp_path, cat_only_data, capsys):
    from labkit.io import save_state_dict
    from tests.helpers import CAT, constant_model

    folder = tmp_path / "submissions"
    folder.mkdir()
    save_state_dict(constant_model(CAT, target_sparsity=0.6).state_dict(), folder / "s60_pruning.pt")
    save_state_dict(constant_model(CAT, target_sparsity=0.8).state_dict(), folder / "s80_pruning.pt")
    page = tmp_path / "ranking.html"
    code = grade_main([str(folder), "--task", "pruning", "--data", str(cat_only_data), "--out",
                       str(tmp_path / "grades.csv"), "--html", str(page)])
    assert code == 0, capsys.readouterr()
    html = page.read_text()
    assert column(html, "ranking", 1) == ["s80", "s60"]
    assert column(html, "submissions", 1) == ["s60", "s80"]
    assert column(html, "submissions", 3) == ["passed", "passed"]


# ----------------------------------------------------------------------------- issue 37: students, copies

def test_a_student_with_two_qualifying_files_is_ranked_once_by_the_better_one():
    rows = [make_row("a", file="a_pruning.pt", accuracy=91.0, sparsity=70.0),
            make_row("a", file="a_v2_pruning.pt", accuracy=90.5, sparsity=95.0),   # a's better file
            make_row("b", file="b_pruning.pt", accuracy=92.0, sparsity=80.0)]
    page = page_html(rows, "pruning")
    assert list(zip(column(page, "ranking", 0), column(page, "ranking", 1), column(page, "ranking", 2))) == [
        ("1", "a", "a_v2_pruning.pt"), ("2", "b", "b_pruning.pt")]             # not 1, 2, 3
    assert column(page, "submissions", 2) == [row["file"] for row in rows]     # every file still listed
    ranks = column(page, "submissions", 4)
    assert ranks[1:] == ["1", "2"] and "one line per student" in ranks[0] and "row 2 ranks 1" in ranks[0]
    assert '<span id="student-count">2</span>' in page


def test_lower_is_better_keeps_the_lower_fom_and_task1_files_never_count():
    rows = [make_row("a", file="a_model_task2.pth", miou=0.70, fom=3e26),
            make_row("a", file="a_v2_model_task2.pth", miou=0.69, fom=5e25),
            make_row("b", file="b_model_task2.pth", miou=0.67, fom=9e25),
            make_row("b", file="b_model_task1.pth", miou=0.80, fom=1e20),              # Task 1, by its name
            {**make_row("c", file="c_weights.pth", miou=0.8, fom=1e21), "artifact": "model_task1"}]
    assert [(rank, row["file"]) for rank, row in ranking_page.ranked(rows, "efficient")] == [
        (1, "a_v2_model_task2.pth"), (2, "b_model_task2.pth")]
    ranks = dict(zip(column(page_html(rows, "efficient"), "submissions", 2),
                     column(page_html(rows, "efficient"), "submissions", 4)))
    assert "Task 2" in ranks["b_model_task1.pth"] and "Task 2" in ranks["c_weights.pth"]


def test_ties_between_students_still_share_a_rank_when_one_has_two_files():
    rows = [make_row("c", accuracy=91.0), make_row("a", accuracy=91.0, file="a1.pt"),
            make_row("a", accuracy=91.0, file="a2.pt"), make_row("d", accuracy=90.0)]
    page = page_html(rows, "quantization")
    assert column(page, "ranking", 1) == ["a", "c", "d"] and column(page, "ranking", 0) == ["1", "1", "3"]
    assert column(page, "ranking", 2) == ["a1.pt", "subs/c_x.pt", "subs/d_x.pt"]


def test_possible_copies_are_listed_escaped_with_the_human_lead_sentence():
    rows = [make_row("a", accuracy=91.0, sparsity=60.0), make_row("b", accuracy=91.0, sparsity=60.0)]
    similar = [{"task": "pruning", "a_id": HOSTILE[0], "a_file": "a_pruning.pt", "b_id": "b",
                "b_file": HOSTILE[2], "kind": "identical weights", "figure": 1.0, "detail": HOSTILE[3]}]
    page = page_html(rows, "pruning", similar=similar)
    assert "Possible copies" in page and "never a grade" in page
    assert parse(page).tables["similar"] == [["pruning", HOSTILE[0], "a_pruning.pt", "b", HOSTILE[2],
                                              "identical weights", "1", HOSTILE[3]]]
    assert "<script" not in page and "<img" not in page and "<h1>owned" not in page
    for absent in (None, []):
        assert "Possible copies" not in page_html(rows, "pruning", similar=absent)
        assert "similar" not in parse(page_html(rows, "pruning", similar=absent)).tables
