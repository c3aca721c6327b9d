#!/usr/bin/env python3
"""Draws the scale bench's curves as SVG line charts, one file per figure.

    python3 docs/figures/plot.py [target/scale.csv] [docs/figures]

Reads the CSV that `cargo bench --bench scale` writes (curve,x,unit,ours,
bare) and writes `<figure>.svg` beside this script (or into the directory
given). Ours is a solid line, the bare counterpart a dashed one in the same
colour. The x axis is logarithmic (the points grow tenfold or so); the y
axis is too when the values span more than two decades. Standard library
only, so that it runs wherever Python 3 does.
"""

import csv
import math
import os
import sys
from collections import defaultdict

# Figure name -> (title, y label, curves in it).
FIGURES = {
    "queue_prefetch": ("Queue throughput by prefetch (one consumer, 64 sends in flight)",
                       "messages/s",
                       ["queue_prefetch_inprocess", "queue_prefetch_redis", "queue_prefetch_amqp",
                        "queue_prefetch_nats"]),
    "queue_consumers": ("Queue throughput by consumers sharing a queue (prefetch 16)",
                        "messages/s",
                        ["queue_consumers_inprocess", "queue_consumers_redis",
                         "queue_consumers_amqp", "queue_consumers_nats"]),
    "queue_size": ("Redis queue throughput by message size (prefetch 16)",
                   "messages/s", ["queue_size_redis"]),
    "agents_start": ("Time to start N agents with a receiver", "seconds", ["agents_start"]),
    "agents_memory": ("Memory per running agent", "bytes", ["agents_memory"]),
    "signal_fanout": ("One signal to N receivers (in-process bus)", "seconds", ["signal_fanout"]),
    "rpc_rate": ("Redis RPC by concurrent callers", "calls/s", ["rpc_callers_redis"]),
    "rpc_latency": ("Redis RPC latency by concurrent callers", "seconds",
                    ["rpc_p50_redis", "rpc_p99_redis"]),
}

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 80, 170, 40, 50


def read(path):
    """curve -> list of (x, ours, bare or None), sorted by x."""
    curves = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            bare = float(row["bare"]) if row["bare"] else None
            curves[row["curve"]].append((float(row["x"]), float(row["ours"]), bare))
    for points in curves.values():
        points.sort()
    return curves


def short(value):
    """A tick label: 1.5k, 20M, 0.25ms style."""
    if value == 0:
        return "0"
    if value < 1:
        for scale, unit in ((1e-6, "µ"), (1e-3, "m")):
            if value < scale * 1000:
                return f"{value / scale:.3g}{unit}"
        return f"{value:.3g}"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def axis(lo, hi, log):
    """Map a value to 0..1 and the ticks to draw."""
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        ticks = [10 ** e for e in range(math.floor(lo), math.ceil(hi) + 1)]
        return (lambda v: (math.log10(v) - lo) / (hi - lo)), [t for t in ticks if 10 ** lo <= t <= 10 ** hi] or [10 ** lo]
    hi = hi * 1.1 if hi > 0 else 1
    step = 10 ** math.floor(math.log10(hi / 4)) if hi > 0 else 1
    for mult in (1, 2, 5, 10):
        if hi / (step * mult) <= 6:
            step *= mult
            break
    ticks = [i * step for i in range(0, int(hi / step) + 1)]
    return (lambda v: v / hi), ticks


def figure(name, title, ylabel, series):
    xs = [x for _, points in series for x, _, _ in points]
    ys = [v for _, points in series for _, o, b in points for v in (o, b) if v is not None]
    if not xs or not ys:
        return None
    fx, xticks = axis(min(xs), max(xs), True)
    positive = [y for y in ys if y > 0]
    ylog = bool(positive) and max(positive) / min(positive) > 100
    fy, yticks = axis(min(positive), max(positive), True) if ylog else axis(0, max(ys), False)
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    px = lambda x: LEFT + fx(x) * pw
    py = lambda y: TOP + ph - fy(max(y, min(positive))) * ph if ylog else TOP + ph - fy(y) * ph
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="13">{title}</text>',
           f'<text x="16" y="{TOP + ph / 2}" transform="rotate(-90 16 {TOP + ph / 2})" '
           f'text-anchor="middle">{ylabel}{" (log)" if ylog else ""}</text>']
    for t in yticks:
        y = py(t)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{short(t)}</text>')
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{short(x)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    legend_y = TOP + 10
    for i, (label, points) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        for which, dash in ((1, ""), (2, ' stroke-dasharray="5 4"')):
            line = [(px(p[0]), py(p[which])) for p in points if p[which] is not None]
            if not line:
                continue
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in line)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
            for x, y in line:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
            lx = LEFT + pw + 12
            out.append(f'<line x1="{lx}" x2="{lx + 24}" y1="{legend_y}" y2="{legend_y}" '
                       f'stroke="{colour}" stroke-width="2"{dash}/>')
            name_shown = label + (" (ours)" if which == 1 else " (bare)")
            out.append(f'<text x="{lx + 30}" y="{legend_y + 4}">{name_shown}</text>')
            legend_y += 18
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "target", "scale.csv")
    target = sys.argv[2] if len(sys.argv) > 2 else here
    curves = read(source)
    for name, (title, ylabel, wanted) in FIGURES.items():
        series = []
        for curve in wanted:
            if curve in curves:
                label = curve.split("_")[-1] if len(wanted) > 1 else curve.replace("_", " ")
                series.append((label, curves[curve]))
        svg = figure(name, title, ylabel, series)
        if svg is None:
            print(f"{name}: no points in {source}, skipped")
            continue
        with open(os.path.join(target, f"{name}.svg"), "w") as f:
            f.write(svg)
        print(f"{name}.svg")


if __name__ == "__main__":
    main()
