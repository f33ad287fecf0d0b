"""Reports: ``report.md`` and a self-contained ``report.html`` per run (radar chart and frame strip
embedded as base64), and a side-by-side comparison of several runs (``--compare``)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from .aggregate import final_scores
from .spec import ALL_DIMS, VBENCH_DIMS


def _fmt(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def radar_values(summary: dict) -> dict[str, float]:
    """Per-dimension values on 0..1 for the radar: VBench dims min-max normalised (unweighted),
    synthetic / extra dims raw."""
    out = {}
    for d, row in summary["dimensions"].items():
        out[d] = ALL_DIMS[d].normalise(row["raw"]) if d in VBENCH_DIMS else row["raw"]
    return out


def plot_radar(runs: dict[str, dict[str, float]], path: Path) -> Path | None:
    """Radar chart of the dimensions common to all runs; None when fewer than three."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = [d for d in ALL_DIMS if all(d in v for v in runs.values())]
    if len(dims) < 3:
        return None
    angles = np.linspace(0, 2 * np.pi, len(dims), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(6, 6), subplot_kw={"polar": True})
    for name, vals in runs.items():
        r = [float(np.clip(vals[d], 0, 1)) for d in dims]
        ax.plot(angles + angles[:1], r + r[:1], label=name)
        ax.fill(angles + angles[:1], r + r[:1], alpha=0.15)
    ax.set_xticks(angles, [d.replace("_", "\n") for d in dims], fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_frame_strip(videos: list[str], path: Path, frames: int = 6) -> Path | None:
    """A row of evenly spaced frames per sample video, captioned by its file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from videosspo.video import read_video

    clips = []
    for v in videos:
        try:
            clip = read_video(v)
        except Exception:  # noqa: BLE001  (a bad sample just leaves the strip)
            continue
        clips.append((Path(v).name, clip[np.linspace(0, len(clip) - 1, min(frames, len(clip))).round().astype(int)]))
    if not clips:
        return None
    cols = max(len(c) for _, c in clips)
    fig, axes = plt.subplots(len(clips), cols, figsize=(1.6 * cols, 1.8 * len(clips)), squeeze=False)
    for row, (name, clip) in zip(axes, clips, strict=True):
        for j, ax in enumerate(row):
            ax.axis("off")
            if j < len(clip):
                ax.imshow(clip[j])
        row[0].set_title(name[:60], fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _score_lines(summary: dict) -> list[str]:
    s = summary["scores"]
    lines = []
    for key, group in (("quality", "quality"), ("semantic", "semantic")):
        miss = s["missing"][group]
        lines.append(
            f"- **{key.title()} score**: {_fmt(s[key])}"
            if s[key] is not None
            else f"- **{key.title()} score**: not computable, missing {', '.join(miss)}"
        )
    lines.append(
        f"- **Total score**: {_fmt(s['total'])}"
        if s["total"] is not None
        else "- **Total score**: not computable (needs all 16 VBench dimensions)"
    )
    p = s["partial"]
    if s["total"] is None and (p["quality"] is not None or p["semantic"] is not None):
        lines.append(
            f"- Partial (dimensions present only, *not comparable with VBench*): quality "
            f"{_fmt(p['quality'])}, semantic {_fmt(p['semantic'])}, total {_fmt(p['total'])}"
        )
    v = s.get("vbench_script")
    if v and v["zeroed"]:
        lines.append(
            f"- What VBench's `cal_final_score.py` would print (missing dimensions counted as 0: "
            f"{', '.join(v['zeroed'])}): quality {_fmt(v['quality'])}, semantic "
            f"{_fmt(v['semantic'])}, total {_fmt(v['total'])}"
        )
    return lines


def _dimension_rows(summary: dict) -> list[list[str]]:
    rows = []
    for d, r in summary["dimensions"].items():
        kind = "proxy" if r.get("proxy") else "exact"
        backend = r.get("backend", "")
        if r.get("static_filter"):
            backend += f"; static filter {r['static_filter']}"
        if r.get("flat_frames"):
            backend += f"; {r['flat_frames']} flat frames scored 0"
        rows.append([d, r["group"], _fmt(r["raw"]), _fmt(r["normalised"]), kind, backend, str(r["n_videos"])])
    return rows


DIM_HEADER = ["dimension", "group", "raw", "normalised x weight", "kind", "backend", "videos"]


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img_html(path: Path | None, alt: str) -> str:
    """An <img> with the PNG embedded, or nothing when the image was not made."""
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{alt}" src="data:image/png;base64,{data}">'


_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}img{max-width:100%}"
)


def write_report(summary: dict, out_dir: Path) -> dict[str, Path]:
    """Write radar.png, frames.png (when they can be made), report.md and report.html."""
    out_dir = Path(out_dir)
    radar = plot_radar({summary["name"]: radar_values(summary)}, out_dir / "radar.png")
    strip = plot_frame_strip(summary["samples"], out_dir / "frames.png")
    skipped = [[d, v["reason"], v["fix"]] for d, v in summary["skipped"].items()]
    errors = [[e["video"], e["error"]] for e in summary["errors"]]
    md = [
        f"# VBench-style evaluation: {summary['name']}",
        "",
        f"{summary['n_videos']} videos, {summary['created']}. Proxies are labelled with their "
        "backend; they are not VBench's official numbers.",
        "",
        *_score_lines(summary),
        "",
        "## Dimensions",
        "",
        _md_table(DIM_HEADER, _dimension_rows(summary)),
        "",
    ]
    if skipped:
        md += ["## Skipped", "", _md_table(["dimension", "reason", "fix"], skipped), ""]
    if errors:
        md += ["## Unreadable videos", "", _md_table(["video", "error"], errors), ""]
    md += [
        f"![radar]({radar.name})" if radar else "_radar: fewer than three dimensions scored_",
        "",
        f"![frames]({strip.name})" if strip else "",
    ]
    (out_dir / "report.md").write_text("\n".join(md) + "\n")
    body = [
        f"<h1>VBench-style evaluation: {html.escape(summary['name'])}</h1>",
        f"<p>{summary['n_videos']} videos, {summary['created']}. Proxies are labelled with their "
        "backend; they are not VBench's official numbers.</p>",
        "<ul>"
        + "".join(f"<li>{html.escape(line[2:]).replace('**', '')}</li>" for line in _score_lines(summary))
        + "</ul>",
        "<h2>Dimensions</h2>",
        _html_table(DIM_HEADER, _dimension_rows(summary)),
    ]
    if skipped:
        body += ["<h2>Skipped</h2>", _html_table(["dimension", "reason", "fix"], skipped)]
    if errors:
        body += ["<h2>Unreadable videos</h2>", _html_table(["video", "error"], errors)]
    body += [_img_html(radar, "radar"), "<h2>Sample frames</h2>", _img_html(strip, "frames")]
    _write_html(out_dir / "report.html", summary["name"], body)
    return {"md": out_dir / "report.md", "html": out_dir / "report.html"}


def _write_html(path: Path, title: str, body: list[str]) -> None:
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )


def load_summary(run: str | Path) -> dict:
    """A run's summary.json, given the run folder or the file."""
    path = Path(run)
    return json.loads((path / "summary.json" if path.is_dir() else path).read_text())


def _like(row: dict) -> tuple:
    """What must agree for two runs' numbers of a dimension to be compared: backend and filter."""
    return row.get("backend"), row.get("static_filter", "").split(":")[0]


def comparable(summaries: list[dict]) -> tuple[list[str], dict[str, str]]:
    """Dimensions every run scored the same way, and why each other dimension is left out."""
    common, left_out = [], {}
    for d in ALL_DIMS:
        rows = [s["dimensions"].get(d) for s in summaries]
        if all(r is None for r in rows):
            continue
        if any(r is None for r in rows):
            left_out[d] = "; ".join(
                f"{s['name']}: {_absent(s, d)}" for s, r in zip(summaries, rows, strict=True) if r is None
            )
        elif len({_like(r) for r in rows}) > 1:
            left_out[d] = "computed differently: " + "; ".join(
                f"{s['name']}: {' / '.join(filter(None, _like(r)))}" for s, r in zip(summaries, rows, strict=True)
            )
        else:
            common.append(d)
    return common, left_out


def _absent(summary: dict, dim: str) -> str:
    requested = summary.get("requested")
    if requested is not None and dim not in requested:
        return "not requested"
    return "skipped (" + summary["skipped"].get(dim, {}).get("reason", "no score") + ")"


def compare_rows(summaries: list[dict]) -> tuple[list[str], list[list[str]], str]:
    """Header, rows and a note for a side-by-side table of the dimensions every run scored the
    same way; Quality / Semantic / Total are recomputed over exactly those dimensions."""
    common, left_out = comparable(summaries)
    header = ["dimension"] + [s["name"] for s in summaries]
    rows = [
        [d]
        + [_fmt(s["dimensions"][d]["raw"]) + (" (proxy)" if s["dimensions"][d].get("proxy") else "") for s in summaries]
        for d in common
    ]
    scores = [final_scores({d: s["dimensions"][d]["raw"] for d in common}) for s in summaries]
    full = all(sc["total"] is not None for sc in scores)
    for key in ("quality", "semantic", "total"):
        rows.append([f"**{key}**"] + [_fmt(sc[key] if full else sc["partial"][key]) for sc in scores])
    note = "Raw scores of the dimensions every run scored the same way. " + (
        "Quality / Semantic / Total are VBench's."
        if full
        else f"Quality / Semantic / Total are partial, over these {len(common)} dimensions only: comparable "
        "between these runs, not with VBench's published numbers."
    )
    if left_out:
        note += " Left out: " + "; ".join(f"{d} ({why})" for d, why in left_out.items()) + "."
    return header, rows, note


def write_comparison(summaries: list[dict], out_dir: Path) -> dict[str, Path]:
    """compare.md, compare.html and compare_radar.png for several runs (e.g. base vs SFT vs SSPO)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    radar = plot_radar({s["name"]: radar_values(s) for s in summaries}, out_dir / "compare_radar.png")
    header, rows, note = compare_rows(summaries)
    md = [
        "# VBench-style comparison",
        "",
        note,
        "",
        _md_table(header, rows),
        "",
        f"![radar]({radar.name})" if radar else "",
    ]
    (out_dir / "compare.md").write_text("\n".join(md) + "\n")
    _write_html(
        out_dir / "compare.html",
        "VBench-style comparison",
        [
            "<h1>VBench-style comparison</h1>",
            f"<p>{html.escape(note)}</p>",
            _html_table(header, [[c.replace("**", "") for c in r] for r in rows]),
            _img_html(radar, "radar"),
        ],
    )
    return {"md": out_dir / "compare.md", "html": out_dir / "compare.html"}
