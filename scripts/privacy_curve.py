"""The privacy designs' accuracy against what the cloud can infer: one plot (issue 17).

Each design is one point: the attack's success from a `cdarec bench privacy` JSON (its
row for the design) and the accuracy from a `cdarec bench accuracy` JSON run under the
same settings (its first graph row). A point is given as

    --point LABEL PRIVACY_JSON DESIGN_NAME ACCURACY_JSON

and the plot shows history recall@50 and re-identification top-1 against NDCG@10, with
the popularity guess as a line. Also prints the points as a Markdown table.

    .venv/bin/python scripts/privacy_curve.py --out docs/results/privacy-accuracy-ml-1m.png \
        --point "default" docs/results/privacy-ml-1m.json "default: ..." r.json ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _privacy_row(path: str, design: str) -> dict:
    rows = json.loads(Path(path).read_text())["rows"]
    for r in rows:
        if r["design"] == design:
            return r
    raise SystemExit(f"{path}: no design {design!r}; known: {[r['design'] for r in rows]}")


def _accuracy(path: str) -> tuple[str, float, float]:
    d = json.loads(Path(path).read_text())
    row = d["rows"][-1]  # the graph row (no-LLM rows come first)
    ndcg = row.get("ndcg10", row.get("ndcg"))
    if isinstance(ndcg, dict):  # Protocol A: NDCG x100 at each k
        ndcg = ndcg.get("10", ndcg.get(10))
    return str(d.get("protocol")), float(row.get("hr10", row.get("hr", 0.0))), float(ndcg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--point", nargs=4, action="append", required=True, metavar="X")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    points = []
    for label, pj, design, aj in args.point:
        p = _privacy_row(pj, design)
        protocol, hr, ndcg = _accuracy(aj)
        points.append((label, p, protocol, hr, ndcg))
    print("| design | history recall@50 | re-id top-1 | linkage | HR@10 | NDCG@10 |")
    print("|---|---|---|---|---|---|")
    for label, p, _, hr, ndcg in points:
        print(
            f"| {label} | {p['recovery']:.3f} | {p['reid_top1']:.1%} | {p['linkage']:.1%} "
            f"| {hr:.4f} | {ndcg:.4f} |"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, name in (
        (axes[0], "recovery", "history recall@50 (attack)"),
        (axes[1], "reid_top1", "re-identified, top-1"),
    ):
        for i, (label, p, _, _, ndcg) in enumerate(points):
            ax.scatter(p[key], ndcg, s=40)
            # labels staggered below the points: close designs would overlap
            ax.annotate(
                label,
                (p[key], ndcg),
                textcoords="offset points",
                xytext=(6, -14 - 13 * i),
                fontsize=9,
                arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.6},
            )
        if key == "recovery":
            pop = points[0][1]["recovery_pop"]
            ax.axvline(pop, color="#bbbbbb", linestyle="--", label="popularity guess")
            ax.legend(loc="center right")
        # A y range of a few points, not the points' own spread: differences of a few
        # thousandths of NDCG@10 are within the noise of a 200-user sample.
        ys = [n for *_, n in points]
        ax.set_ylim(max(0.0, min(ys) - 0.1), max(ys) + 0.05)
        ax.set_xlabel(f"{name}: lower is more private")
        ax.set_ylabel(f"NDCG@10 ({points[0][2]} protocol)")
        ax.grid(alpha=0.3)
    fig.suptitle("What the cloud can infer against what the design costs")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
