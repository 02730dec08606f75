#!/usr/bin/env python3
"""Draws the output of memwall-perf's `bandwidth_trace` example as an SVG line chart.

    cargo run --release -p memwall-perf --example bandwidth_trace 2 60 200 > trace.txt
    tools/plot_bandwidth_trace.py trace.txt docs/bandwidth-trace.svg [--title TEXT]

Each input line is `<seconds> s <GB/s> GB/s`. No dependencies beyond Python.
"""

import argparse


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("svg")
    ap.add_argument("--title", default="Streaming-read bandwidth over time")
    args = ap.parse_args()
    points = []
    with open(args.trace) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "s":
                points.append((float(parts[0]), float(parts[2])))
    if not points:
        raise SystemExit(f"{args.trace}: no '<seconds> s <GB/s> GB/s' lines")
    w, h, left, right, top, bottom = 760, 300, 56, 16, 36, 40
    t_max = max(t for t, _ in points) or 1.0
    y_max = max(10.0, (max(v for _, v in points) // 10 + 1) * 10)
    x = lambda t: left + (w - left - right) * t / t_max
    y = lambda v: top + (h - top - bottom) * (1 - v / y_max)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{args.title}</text>']
    for v in range(0, int(y_max) + 1, 10):
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v}</text>')
    step = 10 if t_max > 30 else 5
    for t in range(0, int(t_max) + 1, step):
        out.append(f'<text x="{x(t):.1f}" y="{h - bottom + 16}" text-anchor="middle">{t}</text>')
    out.append(f'<text x="{w / 2}" y="{h - 6}" text-anchor="middle">seconds</text>')
    out.append(f'<text x="14" y="{h / 2}" text-anchor="middle" transform="rotate(-90 14 {h / 2})">GB/s</text>')
    path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
    out.append(f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    out.append("</svg>")
    with open(args.svg, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
