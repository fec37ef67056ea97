"""Pictures of the report drawn as inline SVG text (no matplotlib, no files): the job
provenance graph, the curation funnel and histograms. Everything is escaped; sizes in px."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

#: Colours of the curation stages (thumbnails use the same); rejected is red.
STAGE_COLORS = {
    "picked": "#4f7fd9", "extracted": "#38a3c9", "classified2d": "#9b6fd1",
    "selected2d": "#e3b422", "rejected2d": "#e0302b", "classified3d": "#f08a24",
    "refined": "#2fb344",
}


def _svg(width: float, height: float, body: list[str], label: str) -> str:
    return (f'<svg width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(label)}">'
            + "".join(body) + "</svg>")


def layers(nodes: Sequence[int], edges: Sequence[tuple[int, int]]) -> dict[int, int]:
    """Layer of each node: the longest path from a node without parents (cycles broken)."""
    parents: dict[int, list[int]] = {n: [] for n in nodes}
    for p, c in edges:
        if p in parents and c in parents:
            parents[c].append(p)
    depth: dict[int, int] = {}
    for n in nodes:
        stack, seen = [(n, False)], set()
        while stack:
            cur, ready = stack.pop()
            if cur in depth:
                continue
            if ready:
                depth[cur] = 1 + max((depth.get(p, 0) for p in parents[cur] if p in depth),
                                     default=-1)
                continue
            seen.add(cur)
            stack.append((cur, True))
            stack.extend((p, False) for p in parents[cur] if p not in depth and p not in seen)
    return depth


def provenance(jobs: Sequence[dict], edges: Sequence[tuple[int, int]]) -> str:
    """The job graph left to right: one box per job (key, kind; coloured by the most curated
    stage of its particle sets, grey without), one line per recorded edge."""
    if not jobs:
        return "<p>no jobs</p>"
    ids = [int(j["id"]) for j in jobs]
    depth = layers(ids, edges)
    by_layer: dict[int, list[dict]] = {}
    for j in jobs:
        by_layer.setdefault(depth[int(j["id"])], []).append(j)
    bw, bh, gx, gy = 130, 34, 40, 12
    pos = {}
    for d, js in by_layer.items():
        for i, j in enumerate(js):
            pos[int(j["id"])] = (10 + d * (bw + gx), 10 + i * (bh + gy))
    width = 20 + (max(by_layer) + 1) * (bw + gx) - gx
    height = 20 + max(len(v) for v in by_layer.values()) * (bh + gy) - gy
    body = []
    for p, c in edges:
        if p in pos and c in pos:
            (x1, y1), (x2, y2) = pos[p], pos[c]
            body.append(f'<line x1="{x1 + bw}" y1="{y1 + bh / 2}" x2="{x2}" y2="{y2 + bh / 2}" '
                        'stroke="#888" stroke-width="1.2"/>')
    for j in jobs:
        x, y = pos[int(j["id"])]
        color = STAGE_COLORS.get(j.get("stage") or "", "#d0d0d0")
        title = escape(f"{j['key']}: {j.get('raw_type') or ''} ({j.get('status') or ''})")
        body.append(f'<g><title>{title}</title><rect x="{x}" y="{y}" width="{bw}" height="{bh}" '
                    f'rx="5" fill="{color}" fill-opacity="0.35" stroke="{color}"/>'
                    f'<text x="{x + 6}" y="{y + 14}" font-size="12" font-weight="bold">'
                    f'{escape(str(j["key"]))[:20]}</text><text x="{x + 6}" y="{y + 28}" '
                    f'font-size="10">{escape(str(j.get("kind") or ""))[:24]}</text></g>')
    return _svg(width, height, body, "job provenance graph")


def funnel(stages: Sequence[tuple[str, int]]) -> str:
    """Horizontal bars, one per stage in curation order, labelled with the count."""
    if not stages:
        return "<p>no particles</p>"
    top = max(c for _, c in stages) or 1
    w, bar, lab = 560, 22, 110
    body = []
    for i, (stage, count) in enumerate(stages):
        y = 6 + i * (bar + 6)
        length = max(1.0, (w - lab - 90) * count / top)
        body.append(f'<text x="0" y="{y + 15}" font-size="12">{escape(stage)}</text>'
                    f'<rect x="{lab}" y="{y}" width="{length:.1f}" height="{bar}" '
                    f'fill="{STAGE_COLORS.get(stage, "#999")}"/>'
                    f'<text x="{lab + length + 6:.1f}" y="{y + 15}" font-size="12" '
                    f'class="count" data-stage="{escape(stage)}">{count:,}</text>')
    return _svg(w, 12 + len(stages) * (bar + 6), body, "curation funnel")


def histogram(values, title: str, unit: str, bins: int = 20) -> str:
    """A histogram of the finite ``values`` with its axis range and count."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return f"<p>{escape(title)}: no values</p>"
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + 1.0
    counts, _ = np.histogram(v, bins=bins, range=(lo, hi))
    w, h, pad = 260, 120, 18
    top = counts.max() or 1
    bw = (w - 2 * pad) / bins
    body = [f'<text x="{pad}" y="12" font-size="11">{escape(title)} (n={len(v)})</text>']
    for i, c in enumerate(counts):
        bh = (h - 2 * pad - 14) * c / top
        body.append(f'<rect x="{pad + i * bw:.1f}" y="{h - pad - bh:.1f}" width="{bw - 1:.1f}" '
                    f'height="{bh:.1f}" fill="#4f7fd9"><title>{int(c)}</title></rect>')
    body.append(f'<text x="{pad}" y="{h - 3}" font-size="10">{_fmt(lo)}</text>'
                f'<text x="{w - pad}" y="{h - 3}" font-size="10" text-anchor="end">'
                f'{_fmt(hi)} {escape(unit)}</text>')
    return _svg(w, h, body, title)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e4 or not math.isfinite(x) else f"{x:,.0f}"
