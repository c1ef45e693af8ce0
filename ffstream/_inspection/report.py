"""``ffstream report``: a recording's health as one HTML page that opens offline.

The page is one file: styles inline, plots as hand-written SVG, thumbnails as PNG data
URIs; nothing is fetched, and it needs no script (the overview's rows link to each
episode's section by anchor). SVG by hand rather than matplotlib: the plots are lines,
marks and bands, a few dozen lines of code, and matplotlib would add a dependency and
seconds of import time to a command that should run anywhere ffstream does.

Colours are the verdicts of _verdict.py, the rules ``verify`` judges by (ok green,
warning yellow, fail red), stated on the page and in docs/report.md.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._ffmpeg import FFmpeg
from .._files.png import encode_png
from .._untrusted import write_replacing
from . import health as hl
from .health import MAX_POINTS, CameraHealth, EpisodeHealth, Health
from .verify import index_ranges

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-top:1px solid #ccc;padding-top:.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.3em .5em;
vertical-align:top;text-align:left}th{background:#f2f2f2}
td.green{background:#d8f5d0}td.yellow{background:#fff1b8}td.red{background:#ffd0cc}
p.error{background:#ffd0cc;padding:.3em .5em}
tr:target,section:target{outline:3px solid #1f77b4}a{color:#0b57a4}
.thumbs img{margin:0 .4em .4em 0;border:1px solid #999;image-rendering:pixelated}
.thumbs figure{display:inline-block;margin:0 .6em .6em 0}figcaption{font-size:.85em}
.legend span{margin-right:1em}.small{font-size:.85em;color:#555}svg{background:#fcfcfc}
"""


def write_report(
    path: str | os.PathLike, out: str | os.PathLike, ffmpeg: FFmpeg | str | None = None
) -> Health:
    """Gather the health of ``path`` and write the page to ``out``."""
    health = hl.gather(path, ffmpeg)
    write_replacing(out, render(health))  # a report.html planted as a link is replaced
    return health


def render(health: Health) -> str:
    e = html.escape
    title = f"ffstream report: {e(Path(health.path).name or health.path)}"
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>',
        f"<style>{CSS}</style></head><body>",
        f"<h1>{title}</h1>",
        f'<p class="small">{e(health.path)} &middot; {_kind(health)} &middot; '
        f"{len(health.episodes)} episode(s) &middot; verdict: "
        f"<b>{hl.verdict_of(health)}</b></p>",
        *(f"<p>{e(note)}</p>" for note in health.notes),
        _overview(health),
        *(_episode(i, ep, _with_pictures(i, ep)) for i, ep in enumerate(health.episodes)),
        f'<footer class="small"><hr>ffstream {e(health.version)} &middot; {e(health.ffmpeg)} '
        f"&middot; {e(health.machine)}</footer></body></html>",
    ]
    return "\n".join(parts)


def _kind(health: Health) -> str:
    return {
        "lerobot": "a LeRobot dataset",
        "episodes": "recorded episodes",
        "videos": "a folder of videos",
    }.get(health.kind, health.kind)


# ------------------------------------------------------------------------- overview
def _overview(health: Health) -> str:
    keys: list[str] = []
    for ep in health.episodes:
        keys += [k for k in ep.cameras if k not in keys]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    rows = []
    for i, ep in enumerate(health.episodes):
        cells = "".join(_cell(ep.cameras.get(k)) for k in keys)
        said = "<br>".join(html.escape(x) for x in [ep.verdict, *ep.errors])
        rows.append(
            f'<tr id="row-{i}"><th><a href="#ep-{i}">{html.escape(ep.name)}</a></th>'
            f'<td class="{ep.colour}">{said}</td>{cells}</tr>'
        )
    return (
        "<h2>Overview</h2>"
        '<p class="small">Colours are the verdicts of <code>ffstream verify</code>: green '
        "ok; yellow a warning (any frame dropped or repeated, a frozen stretch, or 2-5 % "
        "of the rows captured late or off their timestamp, counted from 3 rows); red a "
        "failure (5 % or more of the rows affected, a video that does not decode or whose "
        "frames do not match its rows, an episode the recorder reported an error for or "
        "whose record cannot be used). Each episode's name links to its details.</p>"
        '<table class="overview"><tr><th>episode</th><th>verdict</th>'
        f"{head}</tr>{''.join(rows)}</table>"
    )


def _cell(cam: CameraHealth | None) -> str:
    if cam is None:
        return '<td class="red">no video</td>'
    lines = [f"{_count(cam.frames)} frames / {_count(cam.rows)} rows"]
    if cam.decode_error:
        lines.append("decode error")
    if cam.dropped:
        lines.append(f"{len(cam.dropped)} dropped")
    if cam.repeated:
        lines.append(f"{len(cam.repeated)} repeated")
    if cam.late_rows:
        lines.append(f"{len(cam.late_rows)} late")
    if cam.frozen:
        lines.append(f"frozen {cam.frozen_frames} frames")
    if cam.gaps:
        lines.append(f"{len(cam.gaps)} timestamp gaps")
    drift = cam.drift
    if drift:
        lines.append(f"drift {drift:+d}")
    title = html.escape(cam.encoder, quote=True)
    body = "<br>".join(html.escape(x) for x in lines)
    return f'<td class="{cam.colour}" title="{title}">{body}</td>'


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


# ------------------------------------------------------------------------- an episode
def _with_pictures(i: int, ep: EpisodeHealth) -> bool:
    """Thumbnails for the first episode and for every one with a finding: a page of
    hundreds of healthy episodes stays small."""
    return i == 0 or ep.colour != "green"


def _episode(i: int, ep: EpisodeHealth, pictures: bool = True) -> str:
    e = html.escape
    parts = [f'<section id="ep-{i}"><h2>{e(ep.name)}</h2>']
    parts.append(f'<p class="small"><a href="#row-{i}">back to the overview</a>')
    if ep.fps:
        parts.append(f" &middot; {ep.fps:g} fps")
    parts.append("</p>")
    parts += [f'<p class="error">{e(error)}</p>' for error in ep.errors]
    parts += [f"<p>{e(note)}</p>" for note in ep.notes]
    parts.append(_facts(ep))
    if any(c.lateness_ms for c in ep.cameras.values()):
        parts.append("<h3>Capture lateness per row</h3>" + _lateness_plot(ep))
    tl = ep.timeline
    if isinstance(tl, dict) and isinstance(tl.get("t"), list) and tl["t"]:
        parts.append("<h3>CPU: who used the machine, then each core</h3>" + _cpu_plot(tl))
        queues = tl.get("queues")
        if isinstance(queues, dict) and queues:
            parts.append(
                "<h3>Queue depth per camera</h3>"
                + plot(tl["t"], {k: v for k, v in queues.items() if isinstance(v, list)}, "frames")
            )
    for cam in ep.cameras.values() if pictures else ():
        if cam.thumbnails:
            figs = "".join(
                f'<figure><img alt="{e(cam.key)} {e(label)}" src="{_png_uri(img)}">'
                f"<figcaption>{e(label)}</figcaption></figure>"
                for label, img in cam.thumbnails
            )
            parts.append(f'<h3>{e(cam.key)}</h3><div class="thumbs">{figs}</div>')
    parts.append("</section>")
    return "".join(parts)


def _facts(ep: EpisodeHealth) -> str:
    e = html.escape
    rows = []
    for cam in ep.cameras.values():
        facts = [
            ("frames / rows", f"{_count(cam.frames)} / {_count(cam.rows)}"),
            ("dropped", _indices(cam.dropped)),
            ("repeated", _indices(cam.repeated)),
            ("late rows", _indices(cam.late_rows)),
            ("frozen", ", ".join(f"{a}-{b}" for a, b in cam.frozen) or "none"),
            ("timestamp gaps", _indices(cam.gaps)),
            ("decode error", cam.decode_error or "none"),
            ("encoder", cam.encoder or "?"),
        ]
        if cam.depth_range_m:
            facts.append(("depth range", f"{cam.depth_range_m[0]} m to {cam.depth_range_m[1]} m"))
        cells = "".join(f"<td>{e(v)}</td>" for _, v in facts)
        rows.append(f'<tr><th class="{cam.colour}">{e(cam.key)}</th>{cells}</tr>')
    head = "".join(f"<th>{n}</th>" for n in ("camera", *(n for n, _ in facts))) if rows else ""
    extra = ""
    for cam in ep.cameras.values():
        extra += "".join(f"<li>{e(cam.key)}: {e(r)}</li>" for r in cam.reasons)
    return f'<table class="facts"><tr>{head}</tr>{"".join(rows)}</table>' + (
        f"<ul>{extra}</ul>" if extra else ""
    )


def _indices(values: Sequence[int]) -> str:
    if not values:
        return "none"
    return f"{len(values)}: {index_ranges(list(values))}"


def _lateness_plot(ep: EpisodeHealth) -> str:
    series = {k: c.lateness_ms for k, c in ep.cameras.items() if c.lateness_ms}
    n = max(len(v) for v in series.values())
    marks = [(float(i), "drop") for c in ep.cameras.values() for i in c.dropped]
    bands = [(float(a), float(b)) for c in ep.cameras.values() for a, b in c.frozen]
    limit = 1e3 / ep.fps if ep.fps else None
    rows = [float(i) for i in range(n)]
    return plot(rows, series, "ms late", marks=marks, bands=bands, limit=limit, x_label="row")


def _number(v: Any) -> float | None:
    return float(v) if _finite(v) else None


def _column(tl: dict, key: str, n: int) -> list[float | None]:
    values = tl.get(key)
    if not isinstance(values, list):
        return [None] * n
    return [_number(v) for v in values[:n]] + [None] * max(0, n - len(values))


def _cpu_plot(tl: dict) -> str:
    """Two plots: who used the machine (% of all its cores: the encoders, this process,
    and the other programs, which is the rest), then each core (% of that core)."""
    n = len(tl["t"])
    machine = _column(tl, "cpu", n)
    series: dict[str, list] = {"machine": machine}
    encoders = tl.get("encoders")
    if isinstance(encoders, dict):
        series.update(
            {
                f"ffmpeg {k}": _column(encoders, k, n)
                for k, v in encoders.items()
                if isinstance(v, list)
            }
        )
    ffmpeg = _column(tl, "ffmpeg", n)
    if all(v is None for v in ffmpeg):  # an older record: the sum of the encoders
        parts = [v for k, v in series.items() if k.startswith("ffmpeg ")]
        ffmpeg = [sum(p[i] or 0.0 for p in parts) if parts else None for i in range(n)]
    recorder = _column(tl, "recorder", n)
    if any(v is not None for v in recorder):
        series["this process"] = recorder
    series["other programs"] = [
        None if m is None or f is None else max(0.0, m - f - (r or 0.0))
        for m, f, r in zip(machine, ffmpeg, recorder, strict=True)
    ]
    shares = plot(tl["t"], series, "% of the machine", x_label="s")
    per_core: dict[str, list] = {}
    cores = tl.get("cores")
    if isinstance(cores, list) and cores and isinstance(cores[0], list):
        for c in range(len(cores[0])):
            per_core[f"core {c}"] = [
                row[c] if isinstance(row, list) and c < len(row) else None for row in cores
            ]
    if not per_core:
        return shares
    return shares + plot(tl["t"], per_core, "% of each core", x_label="s")


# ------------------------------------------------------------------------- SVG
def plot(
    x: Sequence[float],
    series: Mapping[str, Sequence[Any]],
    y_label: str,
    marks: Sequence[tuple[float, str]] = (),
    bands: Sequence[tuple[float, float]] = (),
    limit: float | None = None,
    x_label: str = "s",
    width: int = 760,
    height: int = 200,
) -> str:
    """A line plot as inline SVG: one line per series, red ticks at ``marks`` (x), blue
    bands over ``bands`` (x ranges), a dashed line at ``limit``. None is a gap."""
    left, right, top, bottom = 48, 44, 22, 28
    step = math.ceil(len(x) / MAX_POINTS) if len(x) > MAX_POINTS else 1
    if step > 1:  # a long episode: every step-th reading (the page shows ~700 pixels)
        x = x[::step]
        series = {k: v[::step] for k, v in series.items()}
    marks, bands = marks[:MAX_POINTS], bands[:MAX_POINTS]
    xs = [float(v) for v in x if _finite(v)]
    values = [float(v) for s in series.values() for v in s if _finite(v)]  # numbers only
    if not xs or not values:
        return '<p class="small">no readings</p>'
    x0, x1 = min(xs), max(xs) or 1.0
    y0 = min(0.0, *values)
    y1 = max(values + ([limit] if limit else [])) or 1.0
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1

    def px(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * (width - left - right)

    def py(v: float) -> float:
        return top + (y1 - v) / (y1 - y0) * (height - top - bottom)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(y_label)}">'
    ]
    for a, b in bands:
        out.append(
            f'<rect class="frozen" x="{px(a):.1f}" y="{top}" width="{max(px(b) - px(a), 1):.1f}" '
            f'height="{height - top - bottom}" fill="#9ecae1" opacity=".5"/>'
        )
    for v, label in marks:
        out.append(
            f'<line class="{label}" x1="{px(v):.1f}" x2="{px(v):.1f}" y1="{top}" '
            f'y2="{height - bottom}" stroke="#d62728" stroke-width="1.5"/>'
        )
    if limit is not None:
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{py(limit):.1f}" y2="{py(limit):.1f}" '
            'stroke="#d62728" stroke-dasharray="4 3"/>'
        )
    for i, (name, values_) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        for segment in _segments(x, values_):
            if len(segment) == 1:  # a lone reading: a dot
                ((a, b),) = segment
                out.append(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.5" fill="{colour}"/>')
                continue
            pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in segment)
            out.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.3" points="{pts}">'
                f"<title>{html.escape(name)}</title></polyline>"
            )
    axis = height - bottom
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{axis}" stroke="#444"/>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{axis}" y2="{axis}" stroke="#444"/>')
    for v in (y0, y1):
        out.append(f'<text x="{left - 4}" y="{py(v) + 4:.1f}" text-anchor="end" font-size="11">'
                   f"{v:.4g}</text>")  # fmt: skip
    for v in (x0, x1):
        out.append(f'<text x="{px(v):.1f}" y="{axis + 16}" text-anchor="middle" font-size="11">'
                   f"{v:.4g} {html.escape(x_label)}</text>")  # fmt: skip
    out.append(f'<text x="4" y="{top - 8}" font-size="11">{html.escape(y_label)}</text></svg>')
    return "".join(out) + _legend(series, bool(marks), bool(bands))


def _legend(series: Mapping[str, Any], marks: bool, bands: bool) -> str:
    legend = "".join(
        f'<span style="color:{PALETTE[i % len(PALETTE)]}">&#9644; {html.escape(n)}</span>'
        for i, n in enumerate(series)
    )
    if marks:
        legend += '<span style="color:#d62728">| dropped</span>'
    if bands:
        legend += '<span style="color:#3182bd">&#9608; frozen</span>'
    return f'<div class="legend small">{legend}</div>'


def _segments(x: Sequence[float], y: Sequence[float | None]) -> list[list[tuple[float, float]]]:
    out: list[list[tuple[float, float]]] = [[]]
    for a, b in zip(x, y, strict=False):
        if _finite(a) and _finite(b):
            out[-1].append((float(a), float(b)))  # type: ignore[arg-type]
        elif out[-1]:
            out.append([])
    return [s for s in out if s]


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _png_uri(image) -> str:
    data = encode_png(image, level=9)  # small pages: these are written once
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
