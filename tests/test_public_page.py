"""Issue 37's public ranking page: pseudonyms keyed by a secret, one line per student, and nothing
that names a student, a file, a folder, a message or the grading machine (rows built here, no check runs)."""
from __future__ import annotations

import html
import platform
import re
import socket

import pytest

from labkit.grading.public_page import (MIN_SECRET_CHARS, SECRET_ENV, public_page_html, pseudonym, secret_from,
                                        write_public_page)
from labkit.grading.ranking_page import CONTENT_SECURITY_POLICY
from tests.test_ranking_page import HOSTILE, column, make_row, parse

SECRET = b"k3y-for-the-tests-only-0123456789"
OTHER_SECRET = b"another-key-for-the-tests-9876543210"
FOLDER = "/srv/ta-hollis/FolderZebra-Lab03"  # a folder name that must never reach the page


def batch() -> list[dict]:
    """Ten rows with distinctive ids, files, folders and messages: qualifiers (one student twice),
    one below goal, an invalid file, a timeout, a crash, a skipped link, hostile names."""
    def row(student, name, message, *, code=0, status="ok", **metrics):
        return make_row(student, code=code, status=status, message=message,
                        file=f"{FOLDER}/{student}/{student}_{name}", **metrics)
    return [row("QuokkaId7781", "pruning.pt", "MsgQuokkaCongrats", accuracy=91.2, sparsity=88.0),
            row("QuokkaId7781", "v2_pruning.pt", "MsgQuokkaSecondFile", accuracy=90.4, sparsity=71.0),
            row("WombatId4410", "pruning.pt", "MsgWombatCongrats", accuracy=90.1, sparsity=93.5),
            row("NumbatId2093", "pruning.pt", "MsgNumbatCongrats", accuracy=92.7, sparsity=61.0),
            row("DingoId5517", "pruning.pt", "MsgDingoTooLow", code=1, accuracy=84.0, sparsity=97.0),
            row("EmuId3328", "pruning.pt", "MsgEmuFailedToLoad", code=2),
            row("KoalaId6602", "pruning.pt", "MsgKoalaTimedOut", code=124, status="timeout"),
            row("PossumId1149", "pruning.pt", "MsgPossumCrashed", code=-9, status="crashed"),
            row("BilbyId8873", "pruning.pt", "MsgBilbySymlink", code=None, status="skipped"),
            row(HOSTILE[0], "pruning.pt", HOSTILE[3], accuracy=90.5, sparsity=66.0)]


def test_pseudonym_is_stable_secret_dependent_and_carries_no_id():
    ids = [f"20{n:05d}" for n in range(300)] + ["QuokkaId7781", "a", ""]
    tokens = [pseudonym(student, SECRET) for student in ids]
    assert tokens == [pseudonym(student, SECRET) for student in ids]                # stable (across labs too)
    assert tokens == [pseudonym(student, SECRET.decode()) for student in ids]       # str or bytes, same key
    assert len(set(tokens)) == len(ids)                                             # different ids differ
    assert all(pseudonym(s, OTHER_SECRET) != token for s, token in zip(ids, tokens))  # the secret matters
    assert all(re.fullmatch(r"s-[a-z2-7]{10}", token) for token in tokens)          # readable, one length
    assert not [student for student, token in zip(ids, tokens) if len(student) > 2 and student in token]
    assert pseudonym(7781, SECRET) == pseudonym("7781", SECRET)                     # an id is its text


@pytest.mark.parametrize("bad", [None, "", b"", "x" * (MIN_SECRET_CHARS - 1), b"short"])
def test_a_missing_or_short_secret_is_refused_everywhere(bad, tmp_path, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    if bad is not None:
        with pytest.raises(ValueError, match="secret"):
            secret_from(bad)
        monkeypatch.setenv(SECRET_ENV, bad if isinstance(bad, str) else bad.decode())
    with pytest.raises(ValueError, match="secret") as refused:
        secret_from()
    assert "guessable" in str(refused.value) or SECRET_ENV in str(refused.value)  # it says why, or how
    with pytest.raises(ValueError, match="secret"):
        pseudonym("QuokkaId7781", bad)
    for task in ("pruning", "segmentation"):  # refused even where nothing is ranked
        with pytest.raises(ValueError, match="secret"):
            write_public_page(batch(), task, tmp_path / "public.html", secret=bad)
    assert not (tmp_path / "public.html").exists()


def test_the_secret_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET.decode())
    assert secret_from() == SECRET and secret_from(OTHER_SECRET) == OTHER_SECRET
    with pytest.raises(ValueError, match="at least 16"):
        secret_from("fifteen-chars!!")


@pytest.mark.parametrize("task", ["pruning", "quantization", "efficient", "segmentation"])
def test_the_public_page_names_no_id_file_folder_message_or_host(task):
    rows = batch()
    for number, row in enumerate(rows):  # the qualifiers qualify for every task
        if row["metrics"]:
            row["metrics"].update(miou=0.7, fom=1e26 * (number + 1), dice=0.95)
    page = public_page_html(rows, task, secret=SECRET)
    assert task == "segmentation" or len(parse(page).tables["ranking"]) == 4
    leaks = {row["id"] for row in rows} | {row["file"] for row in rows} | {row["message"] for row in rows}
    leaks |= {part for row in rows for part in row["file"].split("/")}          # every folder and file name
    leaks |= {"QuokkaId", "Wombat", "Zebra", "hollis", "/srv/", SECRET.decode(), socket.gethostname(),
              platform.node(), platform.platform(terse=True)}
    for leak in sorted(leak for leak in leaks if len(leak) >= 4):
        for shown in (leak, html.escape(leak, quote=True), leak.lower()):
            assert shown not in page.lower() if shown == leak.lower() else shown not in page, \
                f"{leak!r} is on the public page"
    for word in ("passed", "below goal", "invalid", "timeout", "timed out", "crash", "skipped", "message",
                 "verdict", "congrat"):
        assert word not in page.lower(), f"a verdict word {word!r} is on the public page"


def test_students_who_did_not_qualify_are_not_on_the_page():
    rows = batch()
    page = public_page_html(rows, "pruning", secret=SECRET)
    shown = set(column(page, "ranking", 1))
    qualified = {"QuokkaId7781", "WombatId4410", "NumbatId2093", HOSTILE[0]}
    assert shown == {pseudonym(student, SECRET) for student in qualified}
    assert not [row["id"] for row in rows if pseudonym(row["id"], SECRET) in page and row["id"] not in qualified]
    assert '<span id="student-count">4</span>' in page


def test_a_student_with_two_qualifying_files_is_ranked_once_with_the_better_value():
    page = public_page_html(batch(), "pruning", secret=SECRET)
    table = parse(page).tables["ranking"]
    quokka = pseudonym("QuokkaId7781", SECRET)
    assert [cells[1] for cells in table].count(quokka) == 1
    assert [(cells[0], cells[2]) for cells in table] == [("1", "93.5"), ("2", "88"), ("3", "66"), ("4", "61")]
    assert table[1][1] == quokka and table[1][3] == "91.2"   # the better file's sparsity, with its accuracy
    assert "71" not in [cells[2] for cells in table]


def test_task2_fom_lower_first_task1_files_never_ranked():
    rows = [make_row("a", file="a_model_task2.pth", miou=0.70, fom=3e26),
            make_row("a", file="a_v2_model_task2.pth", miou=0.69, fom=5e25),   # a's better Task 2 file
            make_row("b", file="b_model_task2.pth", miou=0.67, fom=9e25),
            make_row("c", file="c_model_task1.pth", miou=0.80, fom=1e20),       # Task 1: graded, not ranked
            {**make_row("d", file="d_weights.pth", miou=0.8, fom=1e21), "artifact": "model_task1"}]
    table = parse(public_page_html(rows, "efficient", secret=SECRET)).tables["ranking"]
    assert [cells[1] for cells in table] == [pseudonym("a", SECRET), pseudonym("b", SECRET)]
    assert [cells[2] for cells in table] == ["5e+25", "9e+25"] and table[0][3] == "0.69"


def test_ties_share_a_rank_and_are_listed_by_pseudonym_not_by_id():
    students = [f"tie{n}" for n in range(8)]
    rows = [make_row(student, accuracy=91.0) for student in students] + [make_row("top", accuracy=95.0)]
    table = parse(public_page_html(rows, "quantization", secret=SECRET)).tables["ranking"]
    assert [cells[0] for cells in table] == ["1"] + ["2"] * 8
    assert [cells[1] for cells in table[1:]] == sorted(pseudonym(student, SECRET) for student in students)


@pytest.mark.parametrize("task", ["pruning", "quantization", "efficient", "segmentation"])
def test_the_public_page_names_no_url_runs_no_script_and_carries_the_policy(task, tmp_path):
    rows = batch() + [make_row("u", message="see https://example.com/x", file="http://evil/x_pruning.pt",
                               accuracy=91.0, sparsity=99.0, miou=0.7, fom=1e26)]
    page = write_public_page(rows, task, tmp_path / "public.html", secret=SECRET).read_text(encoding="utf-8")
    assert not re.search(r"://|\burl\(|@import|\b(src|href|action|xlink:href)=", page, re.I)
    assert f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">' in page
    assert "<script" not in page.lower() and "<link" not in page.lower() and "<svg" not in page
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "p", "b", "span", "table", "thead",
               "tbody", "tr", "th", "td"}
    assert {tag for tag, _ in parse(page).tags} <= allowed
    assert re.search(rf"task <b>{task}</b> · \d{{4}}-\d\d-\d\d · ", page)
