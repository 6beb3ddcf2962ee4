"""Where the decode-once cache lives: a per-user folder, never inside the dataset."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from labkit.data import cache, pets
from labkit.paths import REPO_ROOT



def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its (size, mtime_ns): proof that nothing was written there."""
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(root.rglob("*"))} | {".": (0, root.stat().st_mtime_ns)}


@pytest.fixture(scope="module")
def pets_root(tmp_path_factory) -> Path:
    return pets.make_fixture(tmp_path_factory.mktemp("data") / "oxford-iiit-pet", n_trainval=10, n_test=2,
                             size=(24, 32))


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("LABKIT_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_user_cache_home_prefers_labkit_cache_dir_then_xdg_then_home(clean_env, tmp_path):
    clean_env.setenv("HOME", str(tmp_path / "home"))
    assert cache.user_cache_home() == tmp_path / "home" / ".cache" / "labkit"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.user_cache_home() == tmp_path / "xdg" / "labkit"
    clean_env.setenv("LABKIT_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.user_cache_home() == tmp_path / "mine"


def test_default_cache_is_outside_the_dataset_folder(clean_env, tmp_path, pets_root):
    clean_env.setenv("LABKIT_CACHE_DIR", str(tmp_path / "caches"))
    before = _snapshot(pets_root)
    cached = pets.OxfordIIITPet(pets_root, "valid", image_size=16, cache=True, progress=False)
    assert _snapshot(pets_root) == before
    files = sorted(p.name for p in (tmp_path / "caches" / cache.dataset_key(pets_root)).iterdir())
    assert len(files) == 2 and all(name.startswith("pets-oxford-iiit-pet-valid-16x16-") for name in files)
    plain = pets.OxfordIIITPet(pets_root, "valid", image_size=16)
    assert all((a == b).all() for a, b in zip(cached[0], plain[0]))


def test_two_copies_of_one_dataset_keep_their_own_caches(clean_env, tmp_path, pets_root):
    clean_env.setenv("LABKIT_CACHE_DIR", str(tmp_path / "caches"))
    other = tmp_path / "elsewhere" / pets_root.name  # same folder name, another place
    shutil.copytree(pets_root, other)
    pets.OxfordIIITPet(pets_root, "valid", image_size=16, cache=True, progress=False)
    pets.OxfordIIITPet(other, "valid", image_size=16, cache=True, progress=False)
    assert cache.dataset_key(pets_root) != cache.dataset_key(other)
    for root in (pets_root, other):  # building the second did not delete the first as "stale"
        assert len(list((tmp_path / "caches" / cache.dataset_key(root)).glob("*.npy"))) == 2


def test_unwritable_cache_home_falls_back_to_a_temp_folder_with_a_note(clean_env, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    clean_env.setenv("LABKIT_CACHE_DIR", str(blocker / "caches"))  # cannot be created, even by root
    clean_env.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    folder = cache.default_cache_dir("/data/oxford-iiit-pet")
    assert folder.is_dir() and folder.is_relative_to(tmp_path / "tmp")
    assert "not writable" in capsys.readouterr().out


def test_explicit_cache_dir_is_used_as_given(clean_env, tmp_path, pets_root):
    pets.OxfordIIITPet(pets_root, "valid", image_size=16, cache_dir=tmp_path / "here", progress=False)
    assert len(list((tmp_path / "here").glob("*.npy"))) == 2


CHILD = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {repo!r})
    from labkit.data import pets
    cached = pets.OxfordIIITPet({root!r}, "valid", image_size=16, cache=True, progress=False)
    plain = pets.OxfordIIITPet({root!r}, "valid", image_size=16)
    same = all(bool((a == b).all()) for i in range(len(plain)) for a, b in zip(cached[i], plain[i]))
    print(json.dumps({{"files": [str(array.filename) for array in cached._cached], "same": same}}))
""")


@pytest.fixture(scope="module")
def as_nobody() -> list[str]:
    """An argv prefix that runs a command as the unprivileged user 'nobody', or skips the test.

    Plain ``setpriv --reuid nobody`` first. Where this interpreter lives in a folder 'nobody' may not
    enter (e.g. pyenv under a 0700 /root), the child keeps one capability, CAP_DAC_READ_SEARCH: it
    may read and traverse any folder, but writing still obeys the permission bits, so a read-only
    dataset stays read-only to it.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root to start a child as the unprivileged user 'nobody'")
    if shutil.which("setpriv") is None:
        pytest.skip("needs util-linux's setpriv to switch to the user 'nobody'")
    import pwd
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    plain = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
    reading = plain + ["--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search"]
    probe = [sys.executable, "-c", f"import sys; assert sys.base_prefix == {sys.base_prefix!r}, 'another stdlib'; "
                                   f"sys.path.insert(0, {str(REPO_ROOT)!r}); import labkit.data.pets"]
    for prefix in (plain, reading):
        if subprocess.run(prefix + probe, cwd="/", capture_output=True, timeout=120).returncode == 0:
            return prefix
    pytest.skip("the user 'nobody' cannot run this Python interpreter here")


@pytest.mark.parametrize("where", ["xdg", "unwritable-home"])
def test_non_root_user_caches_a_read_only_dataset_without_writing_into_it(pets_root, where, as_nobody):
    import pwd
    prefix = as_nobody
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="labkit-cache-test-"))  # under /tmp, so 'nobody' can reach it
    try:
        base.chmod(0o755)
        root = base / "shared" / pets_root.name
        shutil.copytree(pets_root, root)
        for path in [root, *root.rglob("*")]:  # chmod -R a-w, keep it readable
            path.chmod(0o555 if path.is_dir() else 0o444)
        (base / "shared").chmod(0o555)
        user_dir = base / "user"
        (user_dir / "tmp").mkdir(parents=True)
        for path in (user_dir, user_dir / "tmp"):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1",
               "NO_ALBUMENTATIONS_UPDATE": "1", "TMPDIR": str(user_dir / "tmp")}
        if where == "xdg":
            env |= {"HOME": str(user_dir), "XDG_CACHE_HOME": str(user_dir / ".cache")}
            expected = user_dir / ".cache" / "labkit"
        else:
            env |= {"HOME": "/nonexistent"}  # like 'nobody' itself: no home to write in
            expected = user_dir / "tmp" / f"labkit-cache-{nobody.pw_uid}"
        before = _snapshot(root)
        child = [sys.executable, "-c", CHILD.format(repo=str(REPO_ROOT), root=str(root))]
        result = subprocess.run(prefix + child, env=env, cwd=str(base), capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["same"]
        assert all(Path(name).is_relative_to(expected) for name in report["files"]), report["files"]
        assert all(Path(name).stat().st_uid == nobody.pw_uid for name in report["files"])
        assert _snapshot(root) == before  # nothing written (or touched) under the dataset
        if where == "unwritable-home":
            assert "not writable" in result.stdout
    finally:
        for path in [base, *base.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_doctor_says_where_caches_go_and_warns_when_that_cannot_be_written(clean_env, tmp_path):
    from labkit.tools import doctor
    clean_env.setenv("LABKIT_CACHE_DIR", str(tmp_path / "new" / "caches"))  # not there yet: its parent counts
    finding = doctor._cache_folder()
    assert finding.level == "ok" and str(tmp_path / "new" / "caches") in finding.detail
    (tmp_path / "a-file").write_text("")
    clean_env.setenv("LABKIT_CACHE_DIR", str(tmp_path / "a-file" / "caches"))
    finding = doctor._cache_folder()
    assert finding.level == "warn" and "LABKIT_CACHE_DIR" in finding.fix
    assert not (tmp_path / "new").exists()  # the doctor only looks
