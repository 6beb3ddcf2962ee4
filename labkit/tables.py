"""Plain results tables for notebooks and reports (no pandas needed).

Example:
    >>> print(format_table([{"model": "UNet", "dice": 0.91234}]))
    | model | dice   |
    |-------|--------|
    | UNet  | 0.9123 |
"""
from __future__ import annotations


def _cell(value, digits: int) -> str:
    if isinstance(value, float):
        # Scientific notation only where fixed decimals would hide the number (MACs, FoM, tiny values).
        return f"{value:.{digits}g}" if abs(value) >= 1e6 or (value and abs(value) < 1e-3) \
            else f"{value:.{digits}f}"
    return "" if value is None else str(value)


def format_table(rows: list[dict], *, columns: list[str] | None = None, digits: int = 4) -> str:
    """A Markdown table of ``rows`` (one dict per row); floats get ``digits`` decimals."""
    if not rows:
        return "(no rows)"
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(column), digits) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    header = "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(v.ljust(w) for v, w in zip(line, widths)) + " |" for line in cells]
    return "\n".join([header, rule, *body])


def show_table(rows: list[dict], **kwargs) -> str:
    """Render ``format_table`` as Markdown in a notebook (plain text elsewhere); returns the text."""
    text = format_table(rows, **kwargs)
    try:
        from IPython.display import Markdown, display
        display(Markdown(text))
    except ImportError:
        print(text)
    return text
