"""Pictures a training run writes while it runs: the loss curves and the sample grid."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from sagan_restore.io import atomic_write, quantize  # noqa: E402


LOSS_NAMES = ("g_l1", "g_adv", "d_real", "d_fake")
SAMPLE_MIN_SIDE = 192  # sample panels are enlarged (nearest neighbour) to at least this many pixels


def smoothed(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """An exponential moving average that skips missing (NaN) points and starts unbiased (TensorBoard's)."""
    out, avg, norm = np.full_like(values, np.nan), 0.0, 0.0
    for i, v in enumerate(values):
        if np.isfinite(v):
            avg, norm = weight * avg + (1 - weight) * v, weight * norm + (1 - weight)
            out[i] = avg / norm
    return out


def plot_losses(log_csv: Path, out_png: Path) -> None:
    """Loss curves (raw, faint, with a smoothed line over them) and, when the run has one, the validation
    PSNR; only the panels that have data are drawn."""
    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = np.array([int(r["step"]) for r in rows])
    val = [(int(r["step"]), float(r["val_psnr"])) for r in rows if r.get("val_psnr")]
    fig, axes = plt.subplots(1, 2 if val else 1, figsize=(11 if val else 6, 4), squeeze=False)
    losses = axes[0][0]
    for name in LOSS_NAMES:
        values = np.array([float(r[name]) if r.get(name) else np.nan for r in rows])
        if np.isfinite(values).any():
            (line,) = losses.plot(steps, values, linewidth=0.6, alpha=0.3)
            losses.plot(steps, smoothed(values), color=line.get_color(), linewidth=1.4, label=name)
    losses.set_yscale("log")
    losses.set_xlabel("iteration")
    losses.set_title("losses (faint: raw; line: smoothed)")
    losses.legend()
    if val:
        axes[0][1].plot(*zip(*val), marker="o")
        axes[0][1].set_title("validation PSNR (dB)")
        axes[0][1].set_xlabel("iteration")
    fig.tight_layout()
    atomic_write(out_png, lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)


def save_sample_grid(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], out_png: Path, *,
                     names: list[str] | None = None) -> None:
    """One labelled row per sample: input | output | target, (H, W, C) arrays in [0, 1]. An SR input is
    shown at the target's size (nearest neighbour: its pixels as they are), and small crops are enlarged
    to SAMPLE_MIN_SIDE so noise and detail can be seen."""
    panels = []
    for i, (inp, out, target) in enumerate(rows):
        h, w = target.shape[:2]
        factor = max(1, -(-SAMPLE_MIN_SIDE // min(h, w)))
        images = [_enlarged(x, (w * factor, h * factor)) for x in (inp, out, target)]
        name = names[i] if names else f"sample {i + 1}"
        panels.append((name, list(zip(("input", "output", "target"), images))))
    save_panel_grid(panels, out_png, title="", native=True)


def _enlarged(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if img.shape[2] not in (1, 3):  # a many-band raster: its first band, as grey (any three would be a guess)
        img = img[..., :1]
    data = _to_uint8(img)
    if (data.shape[1], data.shape[0]) != size:
        data = np.asarray(Image.fromarray(data).resize(size, Image.Resampling.NEAREST))
    return data[..., None] if data.ndim == 2 else data


def _to_uint8(img: np.ndarray) -> np.ndarray:
    data = quantize(img, 8)
    return data.squeeze(2) if data.shape[2] == 1 else data


def save_panel_grid(rows: list[tuple[str, list[tuple[str, np.ndarray]]]], out_png: Path, *, title: str,
                    native: bool = False) -> None:
    """A figure of labelled image panels: one row per (row name, [(panel label, uint8 (H, W, C) image)]).

    Pixels are drawn as they are (nearest neighbour), so noise, blur and artefacts show at their true size.
    """
    columns = max(len(panels) for _, panels in rows)
    # native: panels as large as the largest image at 100 dpi, so no pixel is lost to downscaling.
    side = max(max(img.shape[:2]) for _, panels in rows for _, img in panels) / 100 + 0.2 if native else 2.2
    fig, axes = plt.subplots(len(rows), columns, figsize=(side * columns, (side + 0.2) * len(rows)), squeeze=False)
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
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(out_png, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
