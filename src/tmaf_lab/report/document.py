"""A tiny document model rendered twice: Markdown (images as relative paths) and a
self-contained HTML page (inline CSS, images as base64 data URIs, no external links)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from tmaf_lab.mdtable import markdown_table


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report folder
    caption: str


Block = Heading | Para | Code | Bullets | Table | Image

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1400px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.2em .45em;text-align:right;white-space:nowrap}
.wide{overflow-x:auto}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.88em;color:#555}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto}code{font-size:.92em}
.caption{font-size:.88em;color:#555;margin:0}
.toc{columns:2;font-size:.92em}
"""


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Code):
            out.append("```\n" + b.text + "\n```")
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            table = markdown_table(b.headers, b.rows).rstrip("\n")
            out.append(table + ("\n\n" + b.caption if b.caption else ""))
        elif isinstance(b, Image):
            out.append(f"![{b.caption}]({b.path})\n\n*{b.caption}*")
    return "\n\n".join(out) + "\n"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def to_html(blocks: list[Block], root: Path, title: str) -> str:
    """HTML with every image inlined from ``root / image.path``."""
    e = html.escape
    body: list[str] = []
    toc = [(f"s{i}", b.text) for i, b in enumerate(blocks)
           if isinstance(b, Heading) and b.level == 2]
    for i, b in enumerate(blocks):
        if isinstance(b, Heading) and b.level == 2:
            body.append(f'<h2 id="s{i}">{e(b.text)}</h2>')
        elif isinstance(b, Heading) and b.level == 1:
            body.append(f"<h1>{e(b.text)}</h1>")
            if toc:
                body.append('<nav><ul class="toc">' + "".join(
                    f'<li><a href="#{a}">{e(t)}</a></li>' for a, t in toc) + "</ul></nav>")
        elif isinstance(b, Heading):
            body.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Code):
            body.append(f"<pre><code>{e(b.text)}</code></pre>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{e(h)}</th>" for h in b.headers)
            rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>"
                           for r in b.rows)
            cap = f'<p class="caption">{e(b.caption)}</p>' if b.caption else ""
            body.append(f'<div class="wide"><table><thead><tr>{head}</tr></thead>'
                        f"<tbody>{rows}</tbody></table></div>{cap}")
        elif isinstance(b, Image):
            src = _data_uri(root / b.path)
            body.append(f'<figure><img src="{src}" alt="{e(b.caption)}">'
                        f"<figcaption>{e(b.caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
