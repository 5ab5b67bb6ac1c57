"""Pictures a training run writes while it runs: the loss curves and the sample grid."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from sagan_restore.checkpoint import atomic_write  # noqa: E402
from sagan_restore.io import write_image  # noqa: E402


def plot_losses(log_csv: Path, out_png: Path) -> None:
    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = np.array([int(r["step"]) for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("g_l1", "g_adv", "d_real", "d_fake"):
        values = np.array([float(r[name]) if r.get(name) else np.nan for r in rows])
        if np.isfinite(values).any():
            axes[0].plot(steps, values, label=name, linewidth=0.8)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("iteration")
    axes[0].set_title("losses")
    axes[0].legend()
    val = [(int(r["step"]), float(r["val_psnr"])) for r in rows if r.get("val_psnr")]
    if val:
        axes[1].plot(*zip(*val), marker="o")
        axes[1].set_title("validation PSNR (dB)")
        axes[1].set_xlabel("iteration")
    else:
        axes[1].set_axis_off()
    fig.tight_layout()
    atomic_write(out_png, lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)


def save_sample_grid(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], out_png: Path) -> None:
    """One row per sample: input | output | target, (H, W, C) arrays in [0, 1]; inputs shown at target size."""
    lines = []
    for inp, out, target in rows:
        h, w = target.shape[:2]
        if inp.shape[:2] != (h, w):  # SR: show the small input with nearest-neighbour blocks, as it is
            inp = np.asarray(Image.fromarray(_to_uint8(inp)).resize((w, h), Image.Resampling.NEAREST)) / 255.0
            inp = inp[..., None] if inp.ndim == 2 else inp
        gap = np.ones((h, 4, target.shape[2]), dtype=np.float32)
        lines.append(np.concatenate([np.clip(inp, 0, 1), gap, np.clip(out, 0, 1), gap, target], axis=1))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0)), constant_values=1) for line in lines]
    write_image(out_png, np.concatenate(lines, axis=0))


def _to_uint8(img: np.ndarray) -> np.ndarray:
    data = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return data.squeeze(2) if data.shape[2] == 1 else data


def save_panel_grid(rows: list[tuple[str, list[tuple[str, np.ndarray]]]], out_png: Path, *, title: str) -> None:
    """A figure of labelled image panels: one row per (row name, [(panel label, uint8 (H, W, C) image)]).

    Pixels are drawn as they are (nearest neighbour), so noise, blur and artefacts show at their true size.
    """
    columns = max(len(panels) for _, panels in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.2 * columns, 2.4 * len(rows)), squeeze=False)
    for axis_row, (row_name, panels) in zip(axes, rows):
        for axis in axis_row:
            axis.set_axis_off()
        for axis, (label, image) in zip(axis_row, panels):
            grey = image.shape[2] == 1
            axis.imshow(image[..., 0] if grey else image, cmap="gray" if grey else None, vmin=0, vmax=255,
                        interpolation="nearest")
            axis.set_title(label, fontsize=8)
        axis_row[0].text(-0.06, 0.5, row_name, transform=axis_row[0].transAxes, rotation=90, ha="right",
                         va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
