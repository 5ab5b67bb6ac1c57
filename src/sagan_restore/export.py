"""Exporting a generator to ONNX: the full model, with dynamic batch, height and width.

The exported graph is the whole generator as it runs on one image or tile: padding to a multiple of
2**depth, the U-Net, attention and the crop back. Tiling is not in the graph; it stays in Python
(`sagan_restore.infer.tiling.tiled_apply` runs an onnxruntime session as readily as a torch model), and the
model's architecture travels in the file's metadata so that the tiler knows the multiple and the scale.
"""

from __future__ import annotations

import inspect
import json
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
import torch

from sagan_restore.config import GeneratorConfig, config_to_dict, generator_config_from_dict
from sagan_restore.errors import UserError
from sagan_restore.infer.loading import load_model
from sagan_restore.io import atomic_write
from sagan_restore.models.generator import UNetGenerator

PARITY_TOLERANCE = 1e-3  # max abs difference on [0, 1] images between onnxruntime and PyTorch
INSTALL_HINT = "pip install 'sagan-restore[export]'"


def export_onnx(spec: str | Path, out: Path, *, opset: int = 17, overwrite: bool = False) -> None:
    """Write the generator at `spec` (run folder, .safetensors or .pt) to `out` as ONNX."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"-o {out}: an ONNX model file should end in .onnx")
    if out.exists() and not overwrite:
        raise UserError(f"-o {out}: the file exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise UserError(f"-o {out}: the folder {out.parent} does not exist")
    try:
        import onnx
    except ImportError:
        raise UserError(f"export needs the onnx package: {INSTALL_HINT}")
    model, info = load_model(spec, device="cpu", realism=0)
    graph = onnx.load_from_string(_trace_to_onnx(model, opset=opset))
    for key, value in {"sagan_restore.generator_config": json.dumps(config_to_dict(model.cfg)),
                       "sagan_restore.info": json.dumps(info)}.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    data = graph.SerializeToString()
    atomic_write(out, lambda f: f.write(data))


def _trace_to_onnx(model: UNetGenerator, *, opset: int) -> bytes:
    """ONNX bytes through the TorchScript exporter (torch's newer exporter needs onnxscript as well).

    The trace follows Python's branches for the example input: one whose sides need padding (and are
    longer than the padding) records the reflect padding, with amounts computed from the input's shape,
    which pads nothing on sides that are already multiples. So the graph works for any size whose sides
    are at least 2**depth.
    """
    m = model.multiple
    example = torch.rand(1, model.cfg.in_channels, 3 * m + 1, 4 * m + 3)
    buffer = BytesIO()
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings():
        # The tracer warns that the padding branch is fixed: intended, see above. Torch >= 2.9 also calls
        # this exporter deprecated in favour of the one that needs onnxscript.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(model.eval(), (example,), buffer, input_names=["image"], output_names=["enhanced"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                        "enhanced": {0: "batch", 2: "out_height", 3: "out_width"}},
                          opset_version=opset, **legacy)
    return buffer.getvalue()


def onnx_session(path: Path):
    """An onnxruntime session on the exported file and the generator config stored in it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"running an ONNX model needs onnxruntime: {INSTALL_HINT}")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    stored = session.get_modelmeta().custom_metadata_map.get("sagan_restore.generator_config")
    if stored is None:
        raise UserError(f"{path}: not exported by sagan-restore (no generator config in its metadata)")
    return session, generator_config_from_dict(json.loads(stored))


def onnx_run_batch(session):
    """A `run` function for tiled_apply: (B, C, h, w) float32 tiles -> the session's output."""
    return lambda tiles: session.run(None, {"image": tiles})[0]


def parity_image(cfg: GeneratorConfig, *, height: int = 150, width: int = 203) -> np.ndarray:
    """A real photo (scikit-image's astronaut), resized to sides that need padding: (1, C, H, W) float32."""
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    if cfg.in_channels == 1:
        photo = photo.convert("L")
    arr = np.asarray(photo, dtype=np.float32) / 255.0
    arr = arr[..., None] if arr.ndim == 2 else arr
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


def onnx_parity(path: Path, spec: str | Path, *, image: np.ndarray | None = None) -> float:
    """Max abs difference between onnxruntime's and PyTorch's outputs on `image` (default: parity_image)."""
    session, cfg = onnx_session(path)
    model, _ = load_model(spec, device="cpu", realism=0)
    image = parity_image(cfg) if image is None else image
    with torch.inference_mode():
        expected = model(torch.from_numpy(image)).numpy()
    got = onnx_run_batch(session)(image)
    return float(np.abs(got - expected).max())


def check_onnx(path: Path, spec: str | Path) -> str:
    """Run the exported file on a real photo and compare with PyTorch; raise if they disagree."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return f"not checked: onnxruntime is not installed ({INSTALL_HINT})"
    diff = onnx_parity(path, spec)
    if diff > PARITY_TOLERANCE:
        raise UserError(f"{path}: onnxruntime's output differs from PyTorch's by up to {diff:.2g} (more than "
                        f"{PARITY_TOLERANCE:g}) on a test photo; the file was written but should not be trusted")
    return f"checked: onnxruntime matches PyTorch within {diff:.1e} (max abs) on a 203x150 photo"
