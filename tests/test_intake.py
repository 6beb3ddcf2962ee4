"""Intake of an LMS download: ids from Canvas, Moodle and course names, every file listed, hostile zip
entries refused with a reason and never written outside ``work``, the latest resubmission kept, rosters read.

Expected ids and times are written by hand from the names, never computed by the code under test."""
import io
import os
import zipfile
from pathlib import Path

import pytest

from labkit.grading.intake import (ArchiveLimits, artifact_name, compile_id_pattern, open_submissions,
                                   read_roster, select_latest)

DATE = (2026, 3, 1, 10, 0, 0)


def zip_bytes(entries) -> bytes:
    """A zip of ``(name or ZipInfo, data)``, deflated; entries dated 2026-03-01 10:00 unless a ZipInfo says."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            info = name if isinstance(name, zipfile.ZipInfo) else zipfile.ZipInfo(name, DATE)
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def make_zip(path: Path, entries) -> Path:
    path.write_bytes(zip_bytes(entries))
    return path


def by_origin(submissions):
    return {submission.origin: submission for submission in submissions}


def files_outside(root: Path, *allowed: Path) -> list[Path]:
    """Every file or link below ``root`` that is not one of ``allowed`` nor below one of them."""
    found = [path for path in root.rglob("*") if path.is_file() or path.is_symlink()]
    return [path for path in found if not any(path == a or a in path.parents for a in allowed)]


def test_canvas_names_give_the_user_id_with_late_resubmission_and_underscores(tmp_path):
    bulk = make_zip(tmp_path / "bulk.zip", [
        ("doejohn_12345_67890_123_pruning.pt", b"a"),
        ("doejohn_LATE_12345_67891_pruning-1.pt", b"b"),
        ("o_brienmary_23456_67892_pruning.pt", b"c"),
        ("roejane_late_34567_67893_notes.txt", b"d"),
        ("doe--john-late_45678_67894_pruning.pth", b"e"),  # older Canvas: punctuation became '-'
    ])
    found = by_origin(open_submissions(bulk, tmp_path / "work", "pruning", id_pattern="canvas"))
    got = {origin.split("!")[1]: (s.student_id, s.artifact) for origin, s in found.items()}
    assert got == {"doejohn_12345_67890_123_pruning.pt": ("12345", "pruning"),
                   "doejohn_LATE_12345_67891_pruning-1.pt": ("12345", "pruning"),
                   "o_brienmary_23456_67892_pruning.pt": ("23456", "pruning"),
                   "roejane_late_34567_67893_notes.txt": ("34567", None),
                   "doe--john-late_45678_67894_pruning.pth": ("45678", "pruning")}
    notes = found["bulk.zip!roejane_late_34567_67893_notes.txt"]
    assert notes.problem.startswith("not named like pruning.pt or pruning.pth")
    kept = found["bulk.zip!o_brienmary_23456_67892_pruning.pt"]
    assert kept.problem is None and kept.path.read_bytes() == b"c"
    assert kept.path == tmp_path / "work" / "bulk" / "o_brienmary_23456_67892_pruning.pt"
    assert kept.timestamp == "2026-03-01T10:00:00+00:00" and kept.timestamp_source == "zip entry time"


def test_moodle_folder_and_flat_downloads_give_the_participant_id(tmp_path):
    bulk = make_zip(tmp_path / "moodle.zip", [
        ("Jane Doe_12345_assignsubmission_file_/pruning.pt", b"a"),
        ("John Roe_23456_assignsubmission_file_123_pruning.pt", b"b"),
        ("Ann Poe_34567_assignsubmission_onlinetext_/onlinetext.html", b"c"),
    ])
    found = open_submissions(bulk, tmp_path / "work", "pruning", id_pattern="moodle")
    assert [(s.student_id, s.artifact) for s in found] == [("12345", "pruning"), ("23456", "pruning"),
                                                           ("34567", None)]
    assert found[0].path.read_bytes() == b"a" and found[1].problem is None


def test_course_names_give_the_id_before_the_artifact_or_the_folder(tmp_path):
    source = tmp_path / "handins"
    (source / "456").mkdir(parents=True)
    (source / "123_pruning.pt").write_bytes(b"")
    (source / "jane_doe_unet.pth").write_bytes(b"")
    (source / "7_resnet34_unet.pth").write_bytes(b"")
    (source / "456" / "unet.pth").write_bytes(b"")
    found = open_submissions(source, tmp_path / "work", "segmentation")
    got = {s.origin: (s.student_id, s.artifact) for s in found}
    assert got == {"handins/123_pruning.pt": ("123", None), "handins/456/unet.pth": ("456", "unet"),
                   "handins/7_resnet34_unet.pth": ("7", "resnet34_unet"),
                   "handins/jane_doe_unet.pth": ("jane_doe", "unet")}
    assert "not named like unet.pth or resnet34_unet.pth" in found[0].problem  # a pruning file, wrong task


def test_artifact_name_ignores_the_lms_prefix_and_the_resubmission_number():
    assert artifact_name("doejohn_12345_67890_123_pruning-1.pt", "pruning") == "pruning"
    assert artifact_name("doejohn_12345_67890_model_task2.pth", "efficient") == "model_task2"
    assert artifact_name("x_resnet34_unet-12.pth", "segmentation") == "resnet34_unet"
    assert artifact_name("mypruning.pt", "pruning") is None and artifact_name("README.txt", "pruning") is None


def test_custom_pattern_with_a_timestamp_group_orders_by_the_time_in_the_name(tmp_path):
    source = tmp_path / "exported"
    source.mkdir()
    for name in ("s1_2026-03-02-08-00-00_pruning.pt", "s1_20260301120000_pruning-5.pt"):
        (source / name).write_bytes(b"")
    pattern = r"(?P<student_id>s\d+)_(?P<timestamp>[\d-]{14,19})_"
    found = select_latest(open_submissions(source, tmp_path / "work", "pruning", id_pattern=pattern))
    times = {s.origin: (s.timestamp, s.timestamp_source, s.problem is None) for s in found}
    assert times == {"exported/s1_2026-03-02-08-00-00_pruning.pt": ("2026-03-02T08:00:00+00:00", "file name", True),
                     "exported/s1_20260301120000_pruning-5.pt": ("2026-03-01T12:00:00+00:00", "file name", False)}


def test_an_id_pattern_without_a_student_id_group_or_that_does_not_compile_is_refused():
    with pytest.raises(ValueError, match=r"no \(\?P<student_id>...\) group"):
        compile_id_pattern(r"(\d+)_pruning")
    with pytest.raises(ValueError, match="does not compile"):
        compile_id_pattern(r"(?P<student_id>\d+")
    assert compile_id_pattern("moodle").search("A B_7_assignsubmission_file_/x.pt")["student_id"] == "7"
    canvas = compile_id_pattern("canvas").search("doejohn_LATE_12345_67891_pruning.pt")
    assert (canvas["name"], canvas["student_id"], canvas["attachment_id"]) == ("doejohn", "12345", "67891")


def test_path_traversal_entries_are_listed_and_nothing_is_written_outside_work(tmp_path):
    work = tmp_path / "a" / "b" / "work"
    bulk = make_zip(tmp_path / "bulk.zip", [("../../../1_pruning.pt", b"evil"), ("/abs/2_pruning.pt", b"evil"),
                                            ("ok/../../3_pruning.pt", b"evil"), ("4_pruning.pt", b"good")])
    found = by_origin(open_submissions(bulk, work, "pruning"))
    for name in ("../../../1_pruning.pt", "/abs/2_pruning.pt", "ok/../../3_pruning.pt"):
        assert "absolute or climbs out with '..'" in found[f"bulk.zip!{name}"].problem
    assert found["bulk.zip!4_pruning.pt"].problem is None
    assert files_outside(tmp_path, bulk, work) == []
    assert [p.name for p in work.rglob("*") if p.is_file()] == ["4_pruning.pt"]


def test_a_symbolic_link_entry_is_listed_and_not_unpacked(tmp_path):
    link = zipfile.ZipInfo("1_pruning.pt", DATE)
    link.external_attr = 0o120777 << 16
    bulk = make_zip(tmp_path / "bulk.zip", [(link, b"/etc/passwd")])
    work = tmp_path / "work"
    [found] = open_submissions(bulk, work, "pruning")
    assert found.student_id == "1" and "symbolic link" in found.problem
    assert not (work / "bulk" / "1_pruning.pt").exists() and files_outside(tmp_path, bulk) == []


def test_a_zip_bomb_entry_is_refused_by_its_compression_ratio_and_not_written(tmp_path):
    bulk = make_zip(tmp_path / "bulk.zip", [("1_pruning.pt", bytes(50 * 2 ** 20)), ("2_pruning.pt", b"fine")])
    work = tmp_path / "work"
    limits = ArchiveLimits(max_ratio=100, max_file_bytes=100 * 2 ** 20)  # size limits let it through: the ratio alone
    found = by_origin(open_submissions(bulk, work, "pruning", limits=limits))
    assert "more than 100:1 (a zip bomb?)" in found["bulk.zip!1_pruning.pt"].problem
    assert not (work / "bulk" / "1_pruning.pt").exists()
    assert found["bulk.zip!2_pruning.pt"].problem is None


def test_too_many_entries_or_bytes_refuse_the_whole_zip_before_unpacking(tmp_path):
    bulk = make_zip(tmp_path / "bulk.zip", [(f"{i}_pruning.pt", bytes(1000)) for i in range(5)])
    [many] = open_submissions(bulk, tmp_path / "w1", "pruning", limits=ArchiveLimits(max_entries=4))
    [big] = open_submissions(bulk, tmp_path / "w2", "pruning", limits=ArchiveLimits(max_total_bytes=4999))
    assert many.origin == "bulk.zip" and "5 entries, more than 4" in many.problem
    assert "unpacks to 5000 bytes, more than the 4999 left" in big.problem
    assert files_outside(tmp_path, bulk) == []


def test_a_password_protected_entry_is_refused(tmp_path):
    data = bytearray(zip_bytes([("1_pruning.pt", b"secret")]))
    for signature, flags_at in ((b"PK\x01\x02", 8), (b"PK\x03\x04", 6)):  # central and local header flag bit 0
        data[data.find(signature) + flags_at] |= 0x1
    (tmp_path / "bulk.zip").write_bytes(bytes(data))
    [found] = open_submissions(tmp_path / "bulk.zip", tmp_path / "work", "pruning")
    assert found.problem.startswith("refused: password-protected")


def test_an_entry_whose_header_understates_its_size_leaves_no_file(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("1_pruning.pt", DATE), bytes(range(256)) * 4)  # stored, 1024 bytes
    data = bytearray(buffer.getvalue())
    central = data.find(b"PK\x01\x02")
    data[central + 24:central + 28] = (10).to_bytes(4, "little")  # the directory claims 10 bytes
    (tmp_path / "bulk.zip").write_bytes(bytes(data))
    [found] = open_submissions(tmp_path / "bulk.zip", tmp_path / "work", "pruning")
    assert found.problem.startswith("refused: unreadable or damaged entry")
    assert not (tmp_path / "work" / "bulk" / "1_pruning.pt").exists()


def test_a_students_zip_is_unpacked_under_their_id_and_a_zip_inside_it_is_refused(tmp_path):
    innermost = zip_bytes([("999_pruning.pt", b"deep")])
    handin = zip_bytes([("123_pruning.pt", b"mine"), ("README.txt", b"hi"), ("nested.zip", innermost),
                        ("__MACOSX/._123_pruning.pt", b""), (".DS_Store", b"")])
    bulk = make_zip(tmp_path / "bulk.zip", [("doejohn_12345_67890_handin.zip", handin)])
    work = tmp_path / "work"
    found = by_origin(open_submissions(bulk, work, "pruning", id_pattern="canvas"))
    assert set(found) == {"bulk.zip!doejohn_12345_67890_handin.zip!123_pruning.pt",
                          "bulk.zip!doejohn_12345_67890_handin.zip!README.txt",
                          "bulk.zip!doejohn_12345_67890_handin.zip!nested.zip"}
    weights = found["bulk.zip!doejohn_12345_67890_handin.zip!123_pruning.pt"]
    assert (weights.student_id, weights.artifact, weights.problem) == ("12345", "pruning", None)
    assert weights.path.read_bytes() == b"mine" and work in weights.path.parents
    assert "not named like" in found["bulk.zip!doejohn_12345_67890_handin.zip!README.txt"].problem
    nested = found["bulk.zip!doejohn_12345_67890_handin.zip!nested.zip"]
    assert nested.student_id == "12345" and "a zip nested 2 deep" in nested.problem
    assert not [path for path in work.rglob("*") if path.name in ("999_pruning.pt", "nested.zip")]


def test_a_folder_download_lists_links_without_following_them_and_opens_student_zips(tmp_path):
    source = tmp_path / "download"
    source.mkdir()
    (tmp_path / "secret.pt").write_bytes(b"secret")
    (source / "1_pruning.pt").symlink_to(tmp_path / "secret.pt")
    (source / "2_pruning.pt").write_bytes(b"two")
    os.utime(source / "2_pruning.pt", (1772359200, 1772359200))  # 2026-03-01 10:00:00 UTC
    make_zip(source / "3_handin.zip", [("3_pruning.pt", b"three")])
    (source / ".DS_Store").write_bytes(b"")
    work = tmp_path / "work"
    found = by_origin(open_submissions(source, work, "pruning"))
    assert set(found) == {"download/1_pruning.pt", "download/2_pruning.pt", "download/3_handin.zip!3_pruning.pt"}
    assert "symbolic link" in found["download/1_pruning.pt"].problem
    two = found["download/2_pruning.pt"]
    assert (two.path, two.timestamp, two.timestamp_source) == (
        source / "2_pruning.pt", "2026-03-01T10:00:00+00:00", "file modification time")
    three = found["download/3_handin.zip!3_pruning.pt"]
    assert three.student_id == "3" and three.path.read_bytes() == b"three" and work in three.path.parents


def test_select_latest_keeps_the_latest_then_the_higher_resubmission_and_lists_the_others(tmp_path):
    later = zipfile.ZipInfo("roejane_23456_3_pruning.pt", (2026, 3, 2, 9, 0, 0))
    bulk = make_zip(tmp_path / "bulk.zip", [
        ("doejohn_12345_1_pruning-2.pt", b"second"), ("doejohn_12345_2_pruning.pt", b"first"),
        ("doejohn_12345_3_pruning-1.pt", b"first again"),  # same zip time: the resubmission number decides
        (later, b"later"), ("roejane_23456_4_pruning-9.pt", b"earlier"),  # different times: the time decides
        ("roejane_23456_5_notes.txt", b"x")])
    found = by_origin(select_latest(open_submissions(bulk, tmp_path / "work", "pruning", id_pattern="canvas")))
    kept = {origin for origin, s in found.items() if s.problem is None}
    assert kept == {"bulk.zip!doejohn_12345_1_pruning-2.pt", "bulk.zip!roejane_23456_3_pruning.pt"}
    for loser, winner in (("doejohn_12345_2_pruning.pt", "doejohn_12345_1_pruning-2.pt"),
                          ("doejohn_12345_3_pruning-1.pt", "doejohn_12345_1_pruning-2.pt"),
                          ("roejane_23456_4_pruning-9.pt", "roejane_23456_3_pruning.pt")):
        assert found[f"bulk.zip!{loser}"].superseded_by == f"bulk.zip!{winner}"
        assert found[f"bulk.zip!{loser}"].problem.startswith(f"superseded by bulk.zip!{winner}")
    assert found["bulk.zip!roejane_23456_5_notes.txt"].superseded_by is None
    assert list(found) == sorted(found, key=lambda o: (found[o].student_id, found[o].artifact or "", o))


def test_read_roster_takes_the_id_column_and_skips_canvas_points_possible(tmp_path):
    canvas = tmp_path / "grades.csv"
    canvas.write_text("\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,Lab 3 (81)\n"
                      "    Points Possible,,,,,100\n"
                      '"Doe, John",12345,s001,jdoe,S1,95\n'
                      '"O\'Brien, Mary",23456,s002,mobrien,S1,\n', encoding="utf-8")
    assert read_roster(canvas) == {"12345": "Doe, John", "23456": "O'Brien, Mary"}
    course = tmp_path / "course.csv"
    course.write_text("ID,student_id,name\n9,s1,Ann\n")
    assert read_roster(course) == {"s1": "Ann"}  # student_id comes before ID
    bad = tmp_path / "bad.csv"
    bad.write_text("Name,Email\nAnn,a@x\n")
    with pytest.raises(ValueError, match=r"bad.csv: no id column; .* found Name, Email"):
        read_roster(bad)


def test_work_must_be_a_new_or_empty_folder(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "old.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="not an empty folder"):
        open_submissions(make_zip(tmp_path / "bulk.zip", []), tmp_path / "work", "pruning")


def test_files_in_a_students_zip_belong_to_whoever_handed_the_zip_in(tmp_path):
    bulk = make_zip(tmp_path / "bulk.zip", [("12345_hw.zip", zip_bytes([("999_pruning.pt", b"copied")]))])
    pattern = r"(?P<student_id>\d+)_\w+\.\w+$"  # matches the zip's name and, alone, the file's name too
    [found] = open_submissions(bulk, tmp_path / "work", "pruning", id_pattern=pattern)
    assert (found.student_id, found.origin) == ("12345", "bulk.zip!12345_hw.zip!999_pruning.pt")


def test_a_work_folder_inside_a_folder_download_is_not_listed_again(tmp_path):
    make_zip(tmp_path / "1_handin.zip", [("1_pruning.pt", b"one")])
    found = open_submissions(tmp_path, tmp_path / "work", "pruning")
    assert [(s.origin, s.student_id) for s in found] == [(f"{tmp_path.name}/1_handin.zip!1_pruning.pt", "1")]
