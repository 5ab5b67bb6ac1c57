"""The forms self-attention can run in at inference on this CPU, on the real activations of a shipped model:
seconds and error, at the token counts of enhance's tiles and of an untiled 1-megapixel photo.

    python benchmarks/attention_forms.py [--model denoise] [--threads 1] [--repeats 3]

Forms (models/attention.py): `fused, one head` (torch's scaled_dot_product_attention with q and k of d
channels and v of C = 8d), `fused, split heads` (v split into C/d heads sharing the one q and k: torch's
fused kernel then never holds the token x token matrix, but computes the weights once per head; what bf16
inference on a CPU used before row blocks) and `row blocks` (the weights of a block of query rows at a time
as plain matrix products; what inference on a CPU runs now), with blocks of 2^21, 2^22 (the default) and
2^23 weights. Inputs: the attention block's input in `--model` run on scikit-image's astronaut, resized so
the bottleneck has the tile's tokens (512-pixel tile: 4,096), in float32 and in bf16 (as autocast gives
it). Seconds: median of --repeats, the forms interleaved; error: the largest absolute difference of the
block's output (x + gamma * attention) from a float64 reference. Writes the `attention_forms-<cpu>`
section of docs/BENCHMARKS.md (one per kind of CPU: the forms' order differs between machines).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from benchdoc import cpu_family, git_commit, replace_section, script_command
from PIL import Image
from skimage import data

from sagan_restore.devices import cpu_has_native_bf16
from sagan_restore.evaluation.machine import cpu_name
from sagan_restore.evaluation.report import markdown_table
from sagan_restore.infer.loading import load_model
from sagan_restore.models import attention
from sagan_restore.models.attention import SelfAttention2d, attention_by_row_blocks

# Input sides whose bottleneck (at depth 3) has the tokens of a 256-, 384- and 512-pixel tile and of a
# 1152 x 864 photo run whole.
SIZES = {"256 tile": (256, 256), "384 tile": (384, 384), "512 tile": (512, 512), "1 MP untiled": (864, 1152)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="denoise")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    return parser.parse_args(argv)


def bottleneck_input(model, block: SelfAttention2d, height: int, width: int) -> torch.Tensor:
    """What `block` sees when the model runs on the astronaut at height x width."""
    photo = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    image = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    seen = []
    handle = block.register_forward_pre_hook(lambda _, args: seen.append(args[0]) or None)
    with torch.inference_mode():
        model(image[:, : model.cfg.in_channels])
    handle.remove()
    return seen[0]


def fused(q, k, v, heads: int) -> torch.Tensor:
    """scaled_dot_product_attention on (B, N, d) q, k and (B, N, C) v, v split into `heads`."""
    b, n, c = v.shape
    d = q.shape[-1]
    vh = v.view(b, n, heads, c // heads).transpose(1, 2).contiguous()
    qh, kh = (t.unsqueeze(1).expand(b, heads, n, d).contiguous() for t in (q, k))
    return F.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).reshape(b, n, c)


def row_blocks(weights: int):
    return lambda q, k, v: attention_by_row_blocks(q, k, v, max_weights=weights)


def forms(heads: int, tokens: int) -> dict:
    found = {"fused, split heads": lambda q, k, v: fused(q, k, v, heads)}
    if tokens ** 2 * 4 <= 2**30:  # one head holds the whole matrix: skipped where it would take over 1 GB
        found["fused, one head"] = lambda q, k, v: fused(q, k, v, 1)
    for log2 in (21, 22, 23):
        found[f"row blocks, 2^{log2} weights" + (" (default)" if 2**log2 == attention.ROW_BLOCK_WEIGHTS else "")] = \
            row_blocks(2**log2)
    return found


def measure(block: SelfAttention2d, x: torch.Tensor, dtype: torch.dtype, repeats: int) -> dict[str, list[float]]:
    with torch.inference_mode():
        q, k, v = (proj(x).flatten(2).transpose(1, 2) for proj in (block.q, block.k, block.v))
        exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
        reference = x.double() + block.gamma.double() * exact.transpose(1, 2).reshape(x.shape)
        q, k, v = (t.to(dtype) for t in (q, k, v))
        tokens = q.shape[1]
        candidates = forms(block.v.out_channels // block.q.out_channels, tokens)
        seconds: dict[str, list[float]] = {name: [] for name in candidates}
        errors = {}
        for name, run in candidates.items():  # one untimed run each: oneDNN builds its kernels
            out = run(q, k, v)
            errors[name] = float((x + block.gamma * out.float().transpose(1, 2).reshape(x.shape)
                                  - reference).abs().max())
        for _ in range(repeats):
            for name, run in candidates.items():
                began = time.perf_counter()
                run(q, k, v)
                seconds[name].append(time.perf_counter() - began)
    return {name: [statistics.median(seconds[name]), errors[name]] for name in candidates}


def main(argv=None) -> None:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    model, _ = load_model(args.model, device="cpu", realism=0)
    model.eval()
    block = next(m for m in model.modules() if isinstance(m, SelfAttention2d))
    dtypes = [torch.float32] + ([torch.bfloat16] if cpu_has_native_bf16() else [])
    rows = []
    for label, (height, width) in SIZES.items():
        x = bottleneck_input(model, block, height, width)
        for dtype in dtypes:
            results = measure(block, x, dtype, args.repeats)
            fastest = min(s for s, _ in results.values())
            for name, (seconds, error) in results.items():
                rows.append([label, f"{x.shape[2] * x.shape[3]:,}", str(dtype).removeprefix("torch."), name,
                             f"{1000 * seconds:.1f}", f"{seconds / fastest:.2f}x", f"{error:.1e}"])
            print(rows[-len(results):], flush=True)
    section = "\n".join([
        f"## Self-attention forms at inference ({cpu_name()}, "
        f"{'native bf16' if cpu_has_native_bf16() else 'no native bf16'})",
        "",
        f"Generated by `benchmarks/attention_forms.py` on commit {git_commit()}: `{script_command()}`",
        "",
        f"The attention block of `{args.model}` (q and k {block.q.out_channels} channels, v "
        f"{block.v.out_channels}) on its real input from scikit-image's astronaut, {args.threads} thread(s), "
        f"median of {args.repeats} interleaved runs. Error: the largest absolute difference of the block's "
        "output from a float64 reference (images are 0..1). `fused, one head` is left out where its weight "
        f"matrix would take over 1 GB. Load average before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f} "
        "(other work on the machine slows every form alike; compare within a size).",
        "",
        markdown_table(["input", "tokens", "dtype", "form", "ms", "time / fastest", "max error"], rows),
    ])
    print(section)
    if not args.no_doc:
        replace_section(f"attention_forms-{cpu_family()}", section)


if __name__ == "__main__":
    main()
