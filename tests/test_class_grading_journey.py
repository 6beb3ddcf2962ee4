"""Issue 37's journey: a TA grades a class from a Canvas-style bulk download, end to end.

One ``.zip`` named the way Canvas's "Download Submissions" names files
(``<sortable name>_[late_]<user id>_<attachment id>_<file name>``; a file's time is its zip entry's),
holding 26 files for 24 students: honest ones, one below each goal, late, late with an extension,
resubmitted, copied (exact and with small noise), hostile, misnamed, a student zip with a ``../``
path, a student's zip done right, a file from someone not on the roster, and a rostered student
with nothing. Every file is graded by the real pruning check (``cat_only_data``: 20 cat images, so
no training is needed). What a Canvas download really holds differs in one way: Canvas zips only
each student's latest attempt, so the resubmission here is a re-upload under the same name
(``-1``), which is how Canvas names it.
"""
import csv
import io
import re
import zipfile

import pytest
import torch

from labkit.grading.grade_class import main as grade
from labkit.io import save_state_dict
from tests.helpers import CAT, CreatesMarkerWhenUnpickled, constant_model

pytestmark = pytest.mark.journey  # slow: make journey-test (CI runs it after make test)

DEADLINE = "2026-03-01T23:59:00+00:00"
ON_TIME, ONE_DAY_LATE, THREE_DAYS_LATE = (2026, 3, 1, 12, 0, 0), (2026, 3, 2, 10, 0, 0), (2026, 3, 4, 9, 0, 0)
SECRET = "a-course-secret-of-enough-length"
HONEST = [f"100{n:02d}" for n in range(1, 9)]  # 10001 ... 10008


def state_bytes(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def honest(seed: int, *, predicted=CAT, sparsity=0.6) -> dict:
    torch.manual_seed(seed)  # another initialisation, so honest students hand in different weights
    return constant_model(predicted, target_sparsity=sparsity).state_dict()


def canvas_name(name: str, user: str, file_name: str, *, late=False) -> str:
    return f"{name}_{'late_' if late else ''}{user}_{int(user) + 50000}_{file_name}"


def student_zip(entries: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def write_download(path, marker):
    """The bulk zip; returns what each student handed in, for the expected outcomes below."""
    files = {}
    for index, user in enumerate(HONEST):
        files[canvas_name(f"student{index}", user, f"{user}_pruning.pt")] = (state_bytes(honest(index)), ON_TIME)
    files[canvas_name("belowaccuracy", "10011", "pruning.pt")] = (state_bytes(honest(11, predicted=CAT + 2)), ON_TIME)
    files[canvas_name("belowsparsity", "10012", "pruning.pt")] = (state_bytes(honest(12, sparsity=None)), ON_TIME)
    files[canvas_name("latecomer", "10013", "pruning.pt", late=True)] = (state_bytes(honest(13)), ONE_DAY_LATE)
    files[canvas_name("extended", "10014", "pruning.pt", late=True)] = (state_bytes(honest(14)), THREE_DAYS_LATE)
    files[canvas_name("resubmitter", "10015", "pruning.pt")] = (state_bytes(honest(15, predicted=CAT + 2)), ON_TIME)
    files[canvas_name("resubmitter", "10015", "pruning-1.pt")] = (state_bytes(honest(15)), (2026, 3, 1, 20, 0, 0))
    original = honest(0)  # 10001's weights
    files[canvas_name("exactcopy", "10016", "pruning.pt")] = (files[canvas_name("student0", "10001", "10001_pruning.pt")][0], ON_TIME)
    torch.manual_seed(99)
    noisy = {key: torch.where(value != 0, value + 1e-3 * value.std() * torch.randn_like(value), value)
             if value.is_floating_point() else value for key, value in honest(1).items()}  # zeros kept: still sparse
    files[canvas_name("noisycopy", "10017", "pruning.pt")] = (state_bytes(noisy), ON_TIME)
    files[canvas_name("hostile", "10018", "pruning.pt")] = (state_bytes({"fc.weight": CreatesMarkerWhenUnpickled(marker)}), ON_TIME)
    files[canvas_name("misnamed", "10019", "mymodel.pt")] = (state_bytes(honest(19)), ON_TIME)
    files[canvas_name("traversal", "10020", "handin.zip")] = (student_zip({"../../escaped_pruning.pt": b"x"}), ON_TIME)
    files[canvas_name("o_brienmary", "10022", "handin.zip")] = (student_zip({"10022_pruning.pt": state_bytes(honest(22))}), ON_TIME)
    files[canvas_name("truncated", "10023", "pruning.pt")] = (state_bytes(honest(23))[:5000], ON_TIME)
    files[canvas_name("stranger", "99999", "pruning.pt")] = (state_bytes(honest(99)), ON_TIME)
    with zipfile.ZipFile(path, "w") as archive:
        for name, (data, when) in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=when), data)
    assert torch.equal(original["fc.bias"], honest(0)["fc.bias"])
    return files


# student -> (gradebook status, score): points are the course's default (accuracy 50 + sparsity 50),
# the late rule course.yaml's (-10 % per started day): computed by hand from what each one handed in
EXPECTED = {**{user: ("graded", 100.0) for user in HONEST},
            "10011": ("graded", 50.0),     # sparsity met, accuracy 0 %
            "10012": ("graded", 50.0),     # accuracy met, sparsity 0 %
            "10013": ("graded", 90.0),     # 1 started day late
            "10014": ("graded", 100.0),    # 3 days late, but the extension runs to March 5
            "10015": ("graded", 100.0),    # the later upload (-1) is graded, the earlier one superseded
            "10016": ("graded", 100.0),    # a copy is flagged, never graded down
            "10017": ("graded", 100.0),
            "10018": ("graded", 0.0),      # a pickled object: refused by the check (exit 2)
            "10019": ("not graded", None),  # named like no artifact: the TA must look
            "10020": ("not graded", None),  # its zip's only entry was refused
            "10021": ("missing", 0.0),     # on the roster, nothing came
            "10022": ("graded", 100.0),    # a student's own zip, opened
            "10023": ("graded", 0.0),      # truncated file (exit 2)
            "99999": ("not on roster", 100.0)}


@pytest.fixture
def download(tmp_path):
    marker = tmp_path / "unpickled-marker"
    files = write_download(tmp_path / "submissions.zip", marker)
    roster = tmp_path / "roster.csv"
    roster.write_text("Student,ID,SIS User ID,Section\n    Points Possible,,,\n"
                      + "".join(f"Student {user},{user},,A\n" for user in sorted(EXPECTED) if user != "99999"))
    (tmp_path / "extensions.csv").write_text("student_id,deadline\n10014,2026-03-05T23:59:00+00:00\n")
    (tmp_path / "course.yaml").write_text("late: {penalty_per_day: 0.1}\n")
    return tmp_path, files, marker


def run(tmp_path, data, *extra):
    out = tmp_path / "lab03"
    return grade([str(tmp_path / "submissions.zip"), "--task", "pruning", "--data", str(data), "--jobs", "2",
                  "--id-pattern", "canvas", "--roster", str(tmp_path / "roster.csv"), "--deadline", DEADLINE,
                  "--extensions", str(tmp_path / "extensions.csv"), "--policy", str(tmp_path / "course.yaml"),
                  "--out", str(out / "grades.csv"), "--gradebook", str(out / "gradebook.csv"),
                  "--feedback", str(out / "feedback"), "--html", str(out / "ranking.html"),
                  "--public", str(out / "public.html"), "--secret", SECRET,
                  "--similarity", str(out / "similarity.csv"), *extra]), out


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_canvas_download_becomes_a_gradebook_feedback_rankings_and_copy_flags(download, cat_only_data, capsys):
    tmp_path, files, marker = download
    code, out = run(tmp_path, cat_only_data)
    printed = capsys.readouterr()
    assert code == 1, printed  # two files got no verdict (misnamed, refused): the TA is told
    assert "mymodel.pt" in printed.err and "escaped_pruning.pt" in printed.err

    gradebook = {row["student_id"]: row for row in read_csv(out / "gradebook.csv")}
    assert {user: (row["status"], float(row["score"]) if row["score"] else None)
            for user, row in gradebook.items()} == EXPECTED
    assert float(gradebook["10013"]["late_penalty"]) == 10.0 and gradebook["10013"]["days_late"] == "1"
    assert gradebook["10014"]["days_late"] == "0"

    per_file = read_csv(out / "grades.csv")
    assert len(per_file) == len(files)  # every file listed: graded, superseded or refused
    superseded = [row for row in per_file if row["status"] == "superseded"]
    assert [row["id"] for row in superseded] == ["10015"] and superseded[0]["origin"].endswith("_pruning.pt")
    assert all(len(row["sha256"]) == 64 and row["labkit_version"] for row in per_file if row["status"] == "ok")
    assert not marker.exists()  # the hostile file was never unpickled
    assert not list(tmp_path.parent.rglob("escaped_pruning.pt"))  # nothing written outside the intake folder

    pairs = {(row["a_id"], row["b_id"], row["kind"]) for row in read_csv(out / "similarity.csv")
             if row["kind"] != "not compared"}
    assert pairs == {("10001", "10016", "identical file"), ("10002", "10017", "near-identical weights"),
                     ("10002", "10017", "identical pruning mask")}  # the noise kept the zeros
    assert "10016" in (out / "ranking.html").read_text() and 'id="similar"' in (out / "ranking.html").read_text()

    feedback = {path.stem: path.read_text() for path in (out / "feedback").glob("*.md")}
    assert set(feedback) == set(EXPECTED)
    for user, text in feedback.items():
        others = [other for other in EXPECTED if other != user and other in text]
        assert not others, f"{user}'s feedback names {others}"
    assert "10 %" in feedback["10013"] or "90%" in feedback["10013"]

    public = (out / "public.html").read_text()
    leaks = [user for user in EXPECTED if user in public]
    names = [re.match(r"(.+?)_(?:late_)?\d+_\d+_", name)[1] for name in files]  # Canvas's sortable names
    leaks += [name for name in [*files, *names] if name in public]
    assert not leaks and "pruning.pt" not in public and "Congratulations" not in public
    assert public.count("s-") >= len([u for u, (status, score) in EXPECTED.items() if score == 100.0])


def test_a_second_run_grades_only_what_is_new(tmp_path, cat_only_data, capsys):
    with zipfile.ZipFile(tmp_path / "submissions.zip", "w") as archive:  # three students on time
        for index, user in enumerate(HONEST[:3]):
            archive.writestr(zipfile.ZipInfo(canvas_name(f"s{index}", user, "pruning.pt"), date_time=ON_TIME),
                             state_bytes(honest(index)))
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id\n" + "".join(f"{user}\n" for user in [*HONEST[:3], "10021"]))
    (tmp_path / "extensions.csv").write_text("student_id,deadline\n")
    (tmp_path / "course.yaml").write_text("late: {penalty_per_day: 0.1}\n")
    run(tmp_path, cat_only_data)
    with zipfile.ZipFile(tmp_path / "submissions.zip", "a") as archive:  # 10021 hands in, late
        archive.writestr(zipfile.ZipInfo(canvas_name("missing", "10021", "pruning.pt", late=True),
                                         date_time=ONE_DAY_LATE), state_bytes(honest(21)))
    code, out = run(tmp_path, cat_only_data)
    assert code == 0, capsys.readouterr()
    graded_now = [row["id"] for row in read_csv(out / "grades.csv") if row["reused"] == "False"]
    assert graded_now == ["10021"]
    gradebook = {row["student_id"]: row for row in read_csv(out / "gradebook.csv")}
    assert (gradebook["10021"]["status"], float(gradebook["10021"]["score"])) == ("graded", 90.0)
    run(tmp_path, cat_only_data, "--force")
    assert [row["reused"] for row in read_csv(out / "grades.csv")] == ["False"] * 4
