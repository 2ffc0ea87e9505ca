"""A single self-contained HTML report: headings, paragraphs, tables and embedded PNG images.

Images are embedded as ``data:image/png;base64,...`` URIs, so the file can be mailed or archived
on its own. The file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import _io

__all__ = ["ReportSection", "image_data_uri", "render_html", "table_html", "write_html_report"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; border-bottom: 2px solid #1f77b4; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .92em; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .3em; }
th, td { border: 1px solid #ccc; padding: .3em .7em; text-align: right; }
th { background: #f1f4f8; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #555; }
.footer { margin-top: 2.5em; font-size: .85em; color: #666; }
"""


@dataclass
class ReportSection:
    """One section of a report.

    Attributes
    ----------
    heading : str
    paragraphs : list of str
        Plain text (escaped), one ``<p>`` each.
    tables : list of (caption, DataFrame)
    images : list of (caption, image)
        ``image`` is a matplotlib Figure, PNG bytes or the path of a PNG file.
    """

    heading: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    images: list[tuple[str, object]] = field(default_factory=list)


def image_data_uri(image) -> str:
    """``data:image/png;base64,...`` for a matplotlib Figure, PNG bytes or a PNG file path."""
    if isinstance(image, bytes | bytearray):
        data = bytes(image)
    elif isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"image file not found: {path}")
        data = path.read_bytes()
    elif hasattr(image, "savefig"):
        buf = io.BytesIO()
        image.savefig(buf, format="png", dpi=120)
        data = buf.getvalue()
    else:
        raise ValueError(f"image must be a Figure, PNG bytes or a path; got {type(image).__name__}")
    if not data.startswith(b"\x89PNG"):
        raise ValueError("image is not a PNG")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _cell(value, digits: int) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if v != v:
            return "–"
        return f"{v:.{digits}g}"
    if value is None:
        return "–"
    return str(value)


def table_html(frame: pd.DataFrame, *, caption: str | None = None, digits: int = 4) -> str:
    """An HTML table of ``frame`` (no index), numbers with ``digits`` significant digits."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"expected a DataFrame; got {type(frame).__name__}")
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append("<thead><tr>")
    parts.extend(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    parts.append("</tr></thead><tbody>")
    for row in frame.itertuples(index=False, name=None):
        parts.append("<tr>")
        parts.extend(f"<td>{html.escape(_cell(v, digits))}</td>" for v in row)
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def render_html(
    title: str,
    sections: Sequence[ReportSection],
    *,
    intro: Sequence[str] = (),
    footer: str | None = None,
) -> str:
    """The complete HTML document as a string."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    out.extend(f"<p>{html.escape(p)}</p>" for p in intro)
    for sec in sections:
        out.append(f"<section><h2>{html.escape(sec.heading)}</h2>")
        out.extend(f"<p>{html.escape(p)}</p>" for p in sec.paragraphs)
        for caption, frame in sec.tables:
            out.append(table_html(frame, caption=caption))
        for caption, image in sec.images:
            out.append(
                f'<figure><img src="{image_data_uri(image)}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        out.append("</section>")
    if footer:
        out.append(f'<p class="footer">{html.escape(footer)}</p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_html_report(
    path: str | os.PathLike,
    title: str,
    sections: Sequence[ReportSection],
    *,
    intro: Sequence[str] = (),
    footer: str | None = None,
) -> Path:
    """Render the report and write it to ``path`` atomically; returns the path."""
    text = render_html(title, sections, intro=intro, footer=footer)
    target = Path(path)
    with _io.atomic_open(target, "w", encoding="utf-8") as fh:
        fh.write(text)
    return target
