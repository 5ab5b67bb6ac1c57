"""Results as files: results.json, results.md (markdown tables) and the comparison figures."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from sagan_restore.errors import UserError
from sagan_restore.evaluation.runner import Comparison, Record, Report


def report_to_json(report: Report) -> dict:
    return {"environment": report.environment, "records": [_finite(asdict(r)) for r in report.records]}


def _finite(value):
    """JSON has no infinity: the PSNR of an exact reproduction becomes null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def markdown_tables(records: list[Record]) -> str:
    """Per set and input kind: PSNR / SSIM and seconds per megapixel, one column per method."""
    blocks = []
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        groups.setdefault((r.set, r.task, r.input), []).append(r)
    for (set_name, task, kind), group in groups.items():
        methods = list(dict.fromkeys(r.method for r in group))
        conditions = list(dict.fromkeys(condition_cell(r) for r in group))
        cell = {(r.method, condition_cell(r)): r for r in group}
        n = max(r.n_images for r in group)
        what = "denoising, PSNR dB / SSIM" if task == "denoise" else "super-resolution, Y-channel PSNR dB / SSIM"
        head = "sigma" if task == "denoise" else "scale"
        blocks.append(f"**{set_name}** ({n} images, {what}, mean over images; input: {kind})\n")
        blocks.append(markdown_table([head] + methods, [[c] + [quality_cell(cell.get((m, c))) for m in methods]
                                                for c in conditions]))
        blocks.append("\nSharpness ratio (high-frequency energy of the output over the ground truth's; 1.0 "
                      "ideal, below = smoother):\n")
        blocks.append(markdown_table([head] + methods, [[c] + [sharpness_cell(cell.get((m, c))) for m in methods]
                                                for c in conditions]))
        blocks.append("\nJPEG blockiness (gradient energy across block boundaries over that inside blocks, on the "
                      "input's 8-pixel grid; 1.0 = no blocks; the ground truth's in the last column):\n")
        truth = {c: next(r.target_blockiness for r in group if condition_cell(r) == c) for c in conditions}
        blocks.append(markdown_table([head] + methods + ["ground truth"],
                                     [[c] + [blockiness_cell(cell.get((m, c))) for m in methods] + [f"{truth[c]:.3f}"]
                                      for c in conditions]))
        blocks.append("\nSeconds per megapixel (median over images):\n")
        blocks.append(markdown_table([head] + methods, [[c] + [speed_cell(cell.get((m, c))) for m in methods]
                                                for c in conditions]))
        blocks.append("")
    return "\n".join(blocks + ["Methods:", "", *method_notes(records), ""])


def method_notes(records: list[Record]) -> list[str]:
    """One line per method and settings; the conditions are named where the settings change with them."""
    conditions: dict[tuple[str, str], list[str]] = {}
    for r in records:
        cells = conditions.setdefault((r.method, r.details), [])
        if condition_cell(r) not in cells:
            cells.append(condition_cell(r))
    methods = [method for method, _ in conditions]
    return [f"- `{method}`" + (f" ({', '.join(cells)})" if methods.count(method) > 1 else "") + f": {details}"
            for (method, details), cells in conditions.items()]


def condition_cell(r: Record) -> str:
    if r.task == "sr":
        return f"x{r.scale}"
    return "paired" if r.sigma is None else f"{r.sigma:g}"


def quality_cell(r: Record | None, missing: str = "") -> str:
    return missing if r is None else f"{r.psnr:.2f} / {r.ssim:.4f}"


def sharpness_cell(r: Record | None, missing: str = "") -> str:
    return missing if r is None else f"{r.sharpness:.3f}"


def blockiness_cell(r: Record | None, missing: str = "") -> str:
    return missing if r is None else f"{r.blockiness:.3f}"


def speed_cell(r: Record | None, missing: str = "", *, digits: int = 4) -> str:
    return missing if r is None else f"{r.sec_per_mp:.{digits}g}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(report: Report, out: Path, *, overwrite: bool = False) -> list[Path]:
    """results.json, results.md and one compare_*.png per set and condition; never replaces old results
    unless told to."""
    from sagan_restore.plots import save_panel_grid

    out = Path(out)
    json_path, md_path = out / "results.json", out / "results.md"
    figures = {out / figure_name(c): c for c in report.comparisons if c.rows}
    existing = [str(p) for p in [json_path, md_path, *figures] if p.exists()]
    if existing and not overwrite:
        raise UserError(f"--out {out}: results already there (pass --overwrite to replace them): "
                        + ", ".join(existing))
    out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report_to_json(report), indent=1, allow_nan=False) + "\n")
    md_path.write_text(markdown_tables(report.records))
    for path, comparison in figures.items():
        save_panel_grid(comparison.rows, path, title=f"{comparison.set}, {comparison.condition.label}")
    return [json_path, md_path, *figures]


def figure_name(comparison: Comparison) -> str:
    label = comparison.condition.label.replace(" ", "")
    return f"compare_{comparison.set}_{label}.png"
