"""Flag Lab 05 ``network.py`` files that look copied from each other: a lead for a human, never a grade.

Uses ``copydetect`` (PyPI, MIT; the winnowing fingerprints of MOSS, Schleimer et al. 2003): each file
is tokenized with pygments and names become ``V``/``F``/``O``, strings ``S``, comments and layout
dropped — so renaming variables, rewording comments or reformatting does not hide a copy; k-grams
of ``noise_t`` (25) filtered characters are hashed and winnowed (window ``guarantee_t - noise_t + 1``),
and fingerprints that also occur in the course's template are removed (boilerplate). copydetect's
figure per file is the share of its (non-template) tokens covered by fingerprints found in the other
file; a pair is reported when the *larger* of the two shares is >= ``threshold`` (0.5: copydetect's own
report shows pairs from 0.33). ``detail`` gives both shares.

Boilerplate: by default the ``network.py`` that ``labkit.grading.network_template`` writes (UNet,
EfficientUNet FP32 and INT8) and the template module itself: students who hand in labkit's generated
file share all of it honestly, so two such files come out ``not compared: nothing beyond the template``,
also when their settings differ (widths, ``WORKING_SIZE``): a file with fewer than ``MIN_OWN_TOKENS``
tokens beyond the template is not compared.

Without copydetect (it is an optional grading dependency), the fallback is ``difflib``'s ratio on the
same kind of token stream (Python's ``tokenize``: names -> ``V``, strings -> ``S``, comments dropped),
lines also found in the template removed; ``detail`` says which method ran.

Files are only read as text (never imported): at most ``MAX_SOURCE_BYTES``, UTF-8, else ``not compared``.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> code = "import torch\\nclass Net(torch.nn.Module):\\n    def __init__(self, width=8):\\n" + "".join(
    ...     f"        self.conv{i} = torch.nn.Conv2d({i + 3}, width * {i + 1}, 3, padding=1, stride={i % 2 + 1})\\n"
    ...     for i in range(6))
    >>> _ = (folder / "a.py").write_text(code); _ = (folder / "b.py").write_text(code.replace("width", "w"))
    >>> [(p["a_id"], p["b_id"], p["kind"]) for p in similar_sources([("1", folder / "a.py"), ("2", folder / "b.py")])]
    [('1', '2', 'similar source')]
"""
from __future__ import annotations

import difflib
import io
import itertools
import keyword
import re
import tokenize
from pathlib import Path

MAX_SOURCE_BYTES = 1024 * 1024
NOISE_T, GUARANTEE_T = 25, 30     # copydetect's defaults are 25 / 25 (window 1); 30 keeps 1/6 of the hashes
# Fewer tokens than this beyond the template (about 10 lines of code) are only the settings labkit writes into
# its generated network.py (MODEL_KWARGS, WORKING_SIZE, the header): measured 92-102 tokens for such files, which
# two honest students share almost all of; a copy of a network of one's own is far longer.
MIN_OWN_TOKENS = 150


def default_boilerplate() -> list[str]:
    """The texts students may share honestly: labkit's generated network.py files and their template."""
    from labkit.grading import network_template as template
    texts = [Path(template.__file__).read_text(encoding="utf-8")]
    for name, int8 in (("UNet", False), ("EfficientUNet", False), ("EfficientUNet", True)):
        for working_size in (None, (128, 256)):  # a model trained at another size carries labkit's WorkingSize
            texts.append(template.network_source(name, model_kwargs={}, int8=int8, working_size=working_size))
    return texts


def _read(path: Path) -> str:
    if path.is_symlink() or not path.is_file():
        raise ValueError("not a regular file")
    if path.stat().st_size > MAX_SOURCE_BYTES:
        raise ValueError(f"over {MAX_SOURCE_BYTES // 1024} KiB")
    return path.read_bytes().decode("utf-8")


def _tokens(text: str) -> list[str]:
    """Python tokens with names -> V (keywords kept), strings -> S, comments and layout dropped."""
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.NAME:
                out.append(tok.string if keyword.iskeyword(tok.string) else "V")
            elif tok.type == tokenize.STRING:
                out.append("S")
            elif tok.type in (tokenize.OP, tokenize.NUMBER):
                out.append(tok.string)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass  # keep what was read: a broken file is still compared
    return out


def _beyond_template(text: str, template_lines: set[str]) -> str:
    return "\n".join(line for line in text.splitlines() if line.strip() not in template_lines)


def _fallback_shares(a: str, b: str, template_lines: set[str]) -> tuple[float, float]:
    keep = lambda text: _beyond_template(text, template_lines)
    ratio = difflib.SequenceMatcher(None, _tokens(keep(a)), _tokens(keep(b)), autojunk=False).ratio()
    return ratio, ratio


def similar_sources(networks, *, template=None, threshold: float = 0.5, method: str = "auto") -> list[dict]:
    """Pairs of different students' ``network.py`` files with much code in common, strongest first.

    Args:
        networks: ``(student_id, path)`` pairs (``network/network.py`` or ``network2/network.py``).
        template: texts of boilerplate to ignore; default :func:`default_boilerplate`.
        threshold: the larger of the two files' copied shares from which a pair is reported.
        method: ``"copydetect"``, ``"difflib"`` or ``"auto"`` (copydetect when installed).

    Returns records like ``find_similar``'s: ``kind`` is ``"similar source"`` (``figure`` the larger
    share) or ``"not compared"`` (``b_*`` empty, the reason in ``detail``).
    """
    if method == "auto":
        try:
            import copydetect  # noqa: F401
            method = "copydetect"
        except ImportError:
            method = "difflib"
    template = default_boilerplate() if template is None else list(template)
    files, records = [], []
    for sid, path in networks:
        path = Path(path)
        entry = {"id": str(sid), "file": f"{path.parent.name}/{path.name}", "artifact": f"{path.parent.name}/{path.name}"}
        try:
            entry["text"] = _read(path)
        except (OSError, ValueError) as error:
            records.append(_record(entry, None, "not compared", None, f"not compared: {path.name}: {error}"))
            continue
        files.append(entry)
    if method == "copydetect":
        from copydetect import CodeFingerprint, compare_files
        boiler = set()
        for text in template:
            boiler.update(CodeFingerprint("template.py", NOISE_T, 1, fp=io.StringIO(text)).hashes)
        boiler = sorted(boiler)
        for entry in files:
            entry["print"] = CodeFingerprint("network.py", NOISE_T, GUARANTEE_T - NOISE_T + 1, boiler,
                                             fp=io.StringIO(entry["text"]))
            entry["own_tokens"] = entry["print"].token_coverage
    else:
        template_lines = {line.strip() for text in template for line in text.splitlines() if line.strip()}
        for entry in files:
            # words and symbols (the kept lines need not tokenize as Python: their blocks may be cut)
            entry["own_tokens"] = len(re.findall(r"\w+|[^\w\s]", _beyond_template(entry["text"], template_lines)))
    for entry in files:
        if entry["own_tokens"] < MIN_OWN_TOKENS:
            records.append(_record(entry, None, "not compared", None,
                                   f"not compared: nothing beyond the course template (labkit's network.py) but "
                                   f"{entry['own_tokens']:.0f} tokens of settings (< {MIN_OWN_TOKENS})"))
    files = [entry for entry in files if entry["own_tokens"] >= MIN_OWN_TOKENS]
    for a, b in itertools.combinations(files, 2):
        if a["id"] == b["id"]:
            continue
        if method == "copydetect":
            _, (share_a, share_b), _ = compare_files(a["print"], b["print"])
        else:
            share_a, share_b = _fallback_shares(a["text"], b["text"], template_lines)
        figure = float(max(share_a, share_b))
        if figure >= threshold:
            records.append(_record(a, b, "similar source", round(figure, 4),
                                   f"{method}: {share_a:.0%} of {a['file']} ({a['id']}) and {share_b:.0%} of "
                                   f"{b['file']} ({b['id']}) in common, course template ignored (threshold {threshold})"))
    return sorted(records, key=lambda r: (r["kind"] == "not compared", -(r["figure"] or 0), r["a_id"], r["b_id"]))


def _record(a, b, kind, figure, detail) -> dict:
    artifact = a["artifact"] if b is None or b["artifact"] == a["artifact"] else f"{a['artifact']} / {b['artifact']}"
    return {"task": "efficient", "artifact": artifact, "a_id": a["id"], "a_file": a["file"],
            "b_id": b["id"] if b else "", "b_file": b["file"] if b else "", "kind": kind, "figure": figure,
            "detail": detail}
