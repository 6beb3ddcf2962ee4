"""A ranking page safe to show the class: pseudonyms instead of student ids, and nothing else about anyone.

    export LABKIT_RANKING_SECRET="$(python -c 'import secrets; print(secrets.token_urlsafe(24))')"  # once a term
    write_public_page(rows, "pruning", "public.html", secret=secret_from())

The page ranks students like the TA's page (:func:`labkit.grading.page_parts.ranked`: one line per
student, their best qualifying file, the course's direction) and shows, per line, the rank, the
student's pseudonym, the ranking metric and the course's other goal metric beside it (accuracy beside
sparsity; mIoU beside Lab 05's FoM); above it the task, the date and the number of ranked students.
It shows no student id, no file name, no check message, no path, no host name, no outcome counts,
and nothing about students who did not qualify; no plot either (the TA page's plot names files).
Like the TA page: no script, no URL, the same Content-Security-Policy, every value escaped.

Pseudonyms: ``"s-"`` + the first 10 characters (50 bits) of the base32 HMAC-SHA256 of the student id
under a secret. The same secret gives a student the same pseudonym in every lab (keep one secret a
term, like a password; a new secret gives everyone new pseudonyms). Why a secret, and a long one:
student ids are guessable (a class list, numbers in a known range), so an unkeyed hash, or a key that
can be guessed, lets anyone recompute every student's pseudonym from the ids; the page itself lets
them test each guess offline. :data:`MIN_SECRET_CHARS` (16) keeps that search out of reach for a
random secret. Within a tie, lines are listed by pseudonym (listing by id would leak the ids' order).

Example:
    >>> secret = secret_from("correct horse battery staple")
    >>> pseudonym("123", secret) == pseudonym("123", secret) != pseudonym("124", secret)
    True
    >>> rows = [{"id": "123", "file": "123_pruning.pt", "status": "ok", "exit_code": 0, "passed": True,
    ...          "metrics": {"accuracy": 91.0, "sparsity": 80.0}, "message": "Congratulations!", "seconds": 3.0}]
    >>> page = public_page_html(rows, "pruning", secret=secret)
    >>> pseudonym("123", secret) in page, "123_pruning" in page, "Congratulations" in page
    (True, False, False)
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
from datetime import datetime, timezone
from pathlib import Path

from labkit.grading.page_parts import BASE_STYLE, CONTENT_SECURITY_POLICY, ranked, text
from labkit.grading.tasks import TASKS
from labkit.version import __version__

SECRET_ENV = "LABKIT_RANKING_SECRET"
MIN_SECRET_CHARS = 16
PSEUDONYM_CHARS = 10   # base32 characters: 50 bits, no collision in practice among a course's students
# the course's other goal metric, shown beside the ranking metric (quantization ranks its only goal)
BESIDE = {"pruning": ("accuracy", "test accuracy (%)"), "efficient": ("miou", "mIoU (Task 2)")}


def _checked(secret: str | bytes | None, where: str) -> bytes:
    """The secret as bytes, or a ValueError saying why it cannot key pseudonyms."""
    if secret is None or len(secret) == 0:
        raise ValueError(
            f"no secret for the pseudonyms ({where}): a public page without one would let anyone who knows "
            f"the student ids recompute them. Set {SECRET_ENV} (keep the same one all term), e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))'")
    if not isinstance(secret, (str, bytes)):
        raise TypeError(f"the secret must be str or bytes, not {type(secret).__name__}")
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(
            f"the secret ({where}) has {len(secret)} characters; at least {MIN_SECRET_CHARS} are needed: student "
            "ids are guessable, so a short secret can be brute-forced from the public page, and with it every "
            "pseudonym traced back to its student. Use e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(24))'")
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def secret_from(value: str | bytes | None = None, env: str = SECRET_ENV) -> bytes:
    """The pseudonyms' secret: ``value`` when given, else the environment variable ``env``.

    Raises:
        ValueError: none given (no ``value``, ``env`` unset or empty), or shorter than 16 characters.

    Example:
        >>> secret_from("0123456789abcdef")
        b'0123456789abcdef'
    """
    if value is not None:
        return _checked(value, "the value given")
    return _checked(os.environ.get(env), f"${env}")


def pseudonym(student_id, secret: str | bytes) -> str:
    """A stable, readable token for a student: ``"s-"`` + 10 base32 characters of HMAC-SHA256(secret, id).

    The same id and secret always give the same token (across labs); another secret, another token.
    """
    key = _checked(secret, "the value given")
    digest = hmac.new(key, str(student_id).encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return "s-" + base64.b32encode(digest).decode("ascii")[:PSEUDONYM_CHARS].lower()


def public_ranking(rows: list[dict], task_name: str, *, secret: str | bytes) -> list[tuple[int, str, dict]]:
    """``(rank, pseudonym, metrics)`` per ranked student, in the course's order; ties by pseudonym."""
    lines = [(rank, pseudonym(row["id"], secret), row.get("metrics", {})) for rank, row in ranked(rows, task_name)]
    if len({token for _, token, _ in lines}) != len(lines):  # 50 bits: about 1 in 10^10 for 300 students
        raise ValueError("two students got the same pseudonym under this secret; choose another secret")
    return sorted(lines, key=lambda line: (line[0], line[1]))


def _shown_number(value) -> str:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return text(value) if ok else "—"  # only numbers reach the page, whatever a verdict carried


def public_page_html(rows: list[dict], task_name: str, *, secret: str | bytes,
                     generated: datetime | None = None) -> str:
    """The public page as one string (see the module docstring for what it shows, and what it never does)."""
    if task_name not in TASKS:
        raise ValueError(f"unknown task {task_name!r}; choose one of {sorted(TASKS)}")
    _checked(secret, "the value given")  # refused even where nothing is ranked
    ranking = TASKS[task_name].ranking
    lines = public_ranking(rows, task_name, secret=secret) if ranking is not None else []
    generated = generated or datetime.now(timezone.utc)
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
           f"<title>Ranking: {text(task_name)}</title><style>{BASE_STYLE}</style></head><body>",
           f"<h1>Ranking: {text(task_name)}</h1>",
           f'<p class="meta" id="meta">task <b>{text(task_name)}</b> · {generated:%Y-%m-%d} · '
           f'<span id="student-count">{len(lines)}</span> students ranked · labkit {text(__version__)}</p>']
    if ranking is None:
        out.append("<p>The course does not rank this task.</p></body></html>")
        return "\n".join(out) + "\n"
    direction = "higher first" if ranking.higher_is_better else "lower first"
    out.append(f"<p>By {text(ranking.label)}, {direction}, among students who achieved the goals: one line per "
               "student, their best submission. Equal values share a rank. Each student is shown by a pseudonym "
               "only; your TA can tell you yours." + (f" Note: {text(ranking.note)}." if ranking.note else "")
               + "</p>")
    beside = BESIDE.get(task_name)
    out.append('<table id="ranking"><thead><tr><th style="width:4em">rank</th><th>student</th>'
               f"<th>{text(ranking.label)}</th>" + (f"<th>{text(beside[1])}</th>" if beside else "")
               + "</tr></thead><tbody>")
    for rank, token, metrics in lines:
        out.append(f'<tr><td class="rank">{rank}</td><td class="pseudonym">{text(token)}</td>'
                   f'<td class="value">{_shown_number(metrics.get(ranking.metric))}</td>'
                   + (f"<td>{_shown_number(metrics.get(beside[0]))}</td>" if beside else "") + "</tr>")
    if not lines:
        out.append(f'<tr class="empty"><td colspan="{3 + bool(beside)}">no student qualified</td></tr>')
    out.append("</tbody></table></body></html>")
    return "\n".join(out) + "\n"


def write_public_page(rows: list[dict], task_name: str, path, *, secret: str | bytes,
                      generated: datetime | None = None) -> Path:
    """Write the public page for ``rows`` (the batch grader's rows) to ``path``; refuses without a secret.

    Args:
        rows: one dict per submission, as :func:`labkit.grading.batch.grade_folder` returns them.
        task_name: a key of ``TASKS``.
        path: the HTML file to write (its folder is created).
        secret: the pseudonyms' key, 16 characters or more (:func:`secret_from` reads ``$LABKIT_RANKING_SECRET``).
        generated: the date shown (default: today, UTC).
    """
    page = public_page_html(rows, task_name, secret=secret, generated=generated)  # before touching the disk
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
