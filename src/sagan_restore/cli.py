"""The `sagan-restore` command. Each subcommand adds its own parser and a `run_*` function; `main` only
dispatches. The argparse Namespace never leaves this file: it becomes a typed config here."""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from pathlib import Path

from sagan_restore.errors import UserError


def _range(text: str, *, kind=float, option: str) -> tuple:
    """'25' -> (25, 25); '0-50' -> (0, 50)."""
    try:
        parts = [kind(p) for p in text.split("-", 1)] if "-" in text.lstrip("-") else [kind(text)] * 2
    except ValueError:
        raise UserError(f"{option} {text}: expected a number or a range like 10-50")
    if parts[0] > parts[1] or parts[0] < 0:
        raise UserError(f"{option} {text}: expected a non-negative range low-high")
    return tuple(parts)


def _levels(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise UserError(f"--attn-levels {text}: expected comma-separated level numbers, e.g. 2,3, or none")


def _weighted_folder(text: str) -> tuple[Path, float]:
    """'photos' -> (photos, 1.0); 'textures:0.3' -> (textures, 0.3)."""
    head, _, tail = text.rpartition(":")
    if head:
        try:
            weight = float(tail)
        except ValueError:
            return Path(text), 1.0
        if weight <= 0:
            raise UserError(f"--clean {text}: the weight must be positive")
        return Path(head), weight
    return Path(text), 1.0


def add_train_parser(sub) -> None:
    from sagan_restore.config import DegradationConfig, GeneratorConfig, TrainConfig, defaults

    T, D, G = defaults(TrainConfig), defaults(DegradationConfig), defaults(GeneratorConfig)  # the one set of defaults
    p = sub.add_parser("train", help="train a generator (and discriminator) on paired or degraded images",
                       description="Train a self-attention U-Net GAN. With no data option, the built-in "
                                   "corpus (scikit-image photos + dead leaves) is used.")
    p.add_argument("--out", type=Path, default=Path("runs/latest"), help="run folder (default runs/latest)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    data = p.add_argument_group("data (choose at most one; none = built-in corpus)")
    data.add_argument("--data", type=Path, help="folder with lr/+hr/, input/+target/ or A/+B/ subfolders")
    data.add_argument("--aligned", type=Path, help="folder of side-by-side input|target images")
    data.add_argument("--clean", action="append", default=[], metavar="DIR[:WEIGHT]",
                      help="folder of clean images, degraded on the fly; repeat for several folders, each "
                           "with an optional relative weight, e.g. --clean photos --clean textures:0.3")
    data.add_argument("--val", type=Path, metavar="DIR",
                      help="held-out images for the validation curve: clean images (degraded once, fixed seeds) "
                           "or pairs in lr/ + hr/ subfolders; centre crops of 384 pixels (default: the built-in "
                           "corpus's held-out photo, none for other data)")
    data.add_argument("--dead-leaves", type=float, default=T["dead_leaves"], metavar="WEIGHT",
                      help="with --clean: also draw procedural dead-leaves images, with this relative weight")
    deg = p.add_argument_group("degradations (for --clean and the built-in corpus)")
    deg.add_argument("--task", choices=["denoise", "sr"], default=D["task"])
    deg.add_argument("--degrade", choices=["custom", "real", "web", "real-web", "camera"], default=D["preset"],
                     help="custom (default): the flags below; real: Real-ESRGAN's second-order pipeline (blur, "
                          "resize, noise, JPEG, twice; with --task sr or denoise); web: one mild stage (blur, "
                          "antialiased downscale, noise, JPEG); real-web: half real, half web; camera: sensor "
                          "noise in linear light, 8 bits, JPEG (--task denoise). Presets draw their own ranges "
                          "(see README)")
    deg.add_argument("--sigma", help="Gaussian noise std (0..255 scale) or range, e.g. 25 or 0-50 "
                                     "(default 25 for denoise, 0 for sr)")
    deg.add_argument("--scale", type=int, choices=[2, 3, 4], help="SR factor (with --task sr; default 4)")
    deg.add_argument("--poisson", type=float, default=D["poisson_peak"], metavar="PEAK",
                     help="Poisson noise, photons at white")
    deg.add_argument("--salt-pepper", type=float, default=D["salt_pepper"], metavar="FRACTION")
    deg.add_argument("--blur", help="Gaussian blur std in pixels or range, e.g. 0-2 (default 0)")
    deg.add_argument("--jpeg", help="JPEG quality range, e.g. 30-95")
    deg.add_argument("--quantize-share", type=float, default=D["quantize_share"],
                     help=f"share of inputs clipped and rounded to 8 bits (default {D['quantize_share']:g})")
    deg.add_argument("--grey-share", type=float, default=D["grey_share"],
                     help="share of colour crops turned grey first, so a colour model learns grey images too")
    deg.add_argument("--keep-noise", action="store_true",
                     help="with --degrade camera: the target keeps the sensor noise, so the model removes the "
                          "file's JPEG and 8-bit artefacts only (how real-restore's light variant for --strength "
                          "is trained)")
    pre = p.add_argument_group("preprocessing")
    pre.add_argument("--load-size", type=int, help="resize images so the shorter side is this first")
    pre.add_argument("--crop", type=int, default=T["crop"], help=f"target crop size (default {T['crop']})")
    pre.add_argument("--no-augment", action="store_true", help="no random flips/rotations")
    model = p.add_argument_group("model")
    model.add_argument("--width", type=int, default=G["width"])
    model.add_argument("--depth", type=int, default=G["depth"])
    model.add_argument("--blocks", default=str(G["blocks"]),
                       help="blocks per level: one count for all, or one per level from full resolution to the "
                            "bottleneck, e.g. 1,1,2,4 for --depth 3")
    model.add_argument("--block", choices=["res", "naf"], default=G["block"],
                       help="res: conv-LeakyReLU-conv residual blocks; naf: NAFNet's blocks")
    model.add_argument("--unshuffle", type=int, choices=[1, 2, 4], default=G["unshuffle"],
                       help="start the U-Net at 1/N resolution (pixel unshuffle, FFDNet's stem; restoration only)")
    model.add_argument("--noise-map", action="store_true",
                       help="feed an estimated noise-level map as an extra input plane (FFDNet's; still blind)")
    model.add_argument("--upsampler", choices=["steps", "once"], default=G["upsampler"],
                       help="SR tail: steps = a conv + pixel shuffle per x2 step (EDSR's, the default); once = one "
                            "conv at the input resolution and one pixel shuffle (ESPCN's, SPAN's: far cheaper at x4)")
    model.add_argument("--attn-levels", help="levels with self-attention, 0 = full resolution (default: depth)")
    model.add_argument("--channels", type=int, default=G["in_channels"],
                       help="3 = colour model, 1 = grey; any other N: an N-band model for rasters (GeoTIFF) "
                            "of N bands, e.g. 4 for R, G, B, NIR or 13 for Sentinel-2")
    model.add_argument("--d-width", type=int, default=T["d_width"],
                       help=f"discriminator channels in its first layer (default {T['d_width']})")
    model.add_argument("--d-layers", type=int, default=T["d_layers"])
    model.add_argument("--spectral-norm", action="store_true")
    model.add_argument("--d-norm", choices=["instance", "batch", "none"],
                       help="D's normalisation (default instance, or none with --spectral-norm: independent of "
                            "the batch split); batch sees over-smooth outputs better, for GAN fine-tunes of L1 "
                            "models. With --spectral-norm it is added to the spectrally normalised convolutions")
    model.add_argument("--d-arch", choices=["patch", "unet"], default=T["d_arch"],
                       help="discriminator: patch (pix2pix's PatchGAN, default) or unet (Real-ESRGAN's U-Net "
                            "discriminator with spectral norm: a verdict per pixel; --d-layers and --d-norm do "
                            "not apply)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--iters", type=int, help=f"iterations (default {T['iters']})")
    opt.add_argument("--batch", type=int, default=T["batch"])
    opt.add_argument("--lr", type=float, default=T["lr"])
    opt.add_argument("--lr-decay-from", type=float, default=T["lr_decay_from"], metavar="FRACTION",
                     help="after this fraction of --iters the lr falls to 0 (default 1.0: constant)")
    opt.add_argument("--lr-schedule", choices=["linear", "cosine"], default=T["lr_schedule"],
                     help="shape of the decay after --lr-decay-from (default linear)")
    opt.add_argument("--weight-decay", type=float, default=T["weight_decay"],
                     help="> 0: AdamW with this decoupled weight decay")
    opt.add_argument("--beta1", type=float, default=T["betas"][0])
    opt.add_argument("--beta2", type=float, default=T["betas"][1])
    opt.add_argument("--adv-weight", type=float, default=T["adv_weight"], help="0 = pure L1 model, no discriminator")
    opt.add_argument("--fm-weight", type=float, default=T["fm_weight"],
                     help="feature matching: L1 between D's features of output and target, this weight "
                          "(default 0; needs --adv-weight above 0)")
    opt.add_argument("--d-lr-mult", type=float, default=T["d_lr_mult"],
                     help="the discriminator's lr as a multiple of --lr (TTUR; default 1)")
    opt.add_argument("--d-unconditional", action="store_true",
                     help="D judges the output alone (Real-ESRGAN's), not (input, output) pairs (pix2pix's)")
    opt.add_argument("--d-warmup", type=int, default=T["d_warmup"], metavar="STEPS",
                     help="train only D for the first STEPS steps, G frozen (default 0)")
    opt.add_argument("--d-highpass", type=float, default=T["d_highpass"], metavar="SIGMA",
                     help="D judges the image minus its Gaussian blur of this sigma in pixels: fine detail "
                          "and noise only (frequency separation; default 0, the whole image)")
    opt.add_argument("--grid-weight", type=float, default=T["grid_weight"],
                     help="SR: penalise error that repeats with the input-pixel period (the grid a pixel-shuffle "
                          "tail can draw under a GAN), this many times the pixel loss's weight (default 0)")
    opt.add_argument("--block-weight", type=float, default=T["block_weight"],
                     help="hold the output's steps across the input's JPEG block boundaries (every 8 x scale "
                          "pixels) to the target's, this many times the pixel loss's weight (default 0)")
    opt.add_argument("--chroma-weight", type=float, default=T["chroma_weight"],
                     help="hold the colour's fine detail to the target's (against colour speckle), this many "
                          "times the pixel loss's weight (default 0)")
    opt.add_argument("--detail-weight", type=float, default=T["detail_weight"],
                     help="hold the amount of fine detail in each 16-pixel patch to the target's (against both "
                          "L1's smoothing and a GAN's overshoot), this many times the pixel loss's weight "
                          "(default 0)")
    opt.add_argument("--artifact-weight", type=float, default=T["artifact_weight"],
                     help="LDL's artifact loss: pull harder where the error is noisy and worse than the EMA "
                          "model's (false GAN texture), this many times the pixel loss's weight; needs --ema "
                          "(default 0)")
    opt.add_argument("--l1-weight", type=float, default=T["l1_weight"], help="weight of the pixel loss")
    opt.add_argument("--pixel-loss", choices=["l1", "charbonnier"], default=T["pixel_loss"])
    opt.add_argument("--fft-weight", type=float, default=T["fft_weight"],
                     help="add a frequency (FFT) loss, this many times the pixel loss's weight (e.g. 0.05)")
    opt.add_argument("--seed", type=int, default=T["seed"])
    opt.add_argument("--init-from", type=Path, metavar="MODEL",
                     help="start the generator from a trained model (same architecture, or the same body at "
                          "another --scale, e.g. x4 from x2): fine-tuning")
    run = p.add_argument_group("run")
    run.add_argument("--device", type=_device, default=T["device"], help="auto, cpu, cuda or cuda:N (default auto)")
    run.add_argument("--workers", type=int, default=T["workers"], help="DataLoader worker processes (per process)")
    run.add_argument("--cache-mb", type=int, default=T["cache_mb"],
                     help=f"decoded training images kept in memory, per process (default {T['cache_mb']})")
    speed = p.add_argument_group("speed and scale (see README: Scaling up)")
    speed.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=T["precision"],
                       help="bf16 autocast; auto = bf16 on a GPU that supports it and on a CPU with native "
                            "bf16 (AVX512-BF16 or AMX), fp32 elsewhere")
    speed.add_argument("--ema", type=float, default=T["ema"], metavar="DECAY",
                       help="keep a moving average of G's weights (e.g. 0.999) for samples and the saved model")
    speed.add_argument("--accumulate", type=int, default=T["accumulate"], metavar="N",
                       help="split each step into N micro-batches (gradient accumulation; --batch stays global)")
    speed.add_argument("--compile", action="store_true", help="torch.compile the nets for training")
    speed.add_argument("--channels-last", action="store_true", help="NHWC memory layout")
    speed.add_argument("--tensorboard", action="store_true", help="also log to RUN_DIR/tensorboard")
    run.add_argument("--save-every", type=int, default=T["save_every"])
    run.add_argument("--keep", type=int, default=T["keep"], help=f"newest checkpoints to keep (default {T['keep']})")
    run.add_argument("--max-pixels", type=float, default=T["max_pixels"],
                     help="refuse images larger than this, as possible decompression bombs "
                          f"(default {T['max_pixels']:g})")
    run.add_argument("--sample-every", type=int, default=T["sample_every"])
    run.add_argument("--log-every", type=int, default=T["log_every"])
    run.add_argument("--no-progress", action="store_true")
    p.set_defaults(command=run_train)


def train_config_from_args(args):
    from sagan_restore.config import DegradationConfig, GeneratorConfig, TrainConfig

    if args.data or args.aligned:
        _refuse_degradation_flags(args)
    try:
        degradation = DegradationConfig(
            task=args.task,
            preset=args.degrade,
            scale=(args.scale or 4) if args.task == "sr" else 1,  # the task's defaults live in the config
            sigma=_range(args.sigma, option="--sigma") if args.sigma else None,
            poisson_peak=args.poisson,
            salt_pepper=args.salt_pepper,
            blur=_range(args.blur or "0", option="--blur"),
            jpeg=_range(args.jpeg, kind=int, option="--jpeg") if args.jpeg else None,
            quantize_share=args.quantize_share,
            grey_share=args.grey_share,
            keep_noise=args.keep_noise,
        )
    except ValueError as err:
        raise _option_error(err)
    scale = degradation.scale
    if args.data or args.aligned:
        from sagan_restore.data.datasets import paired_data_scale

        scale = paired_data_scale(args.data) if args.data else 1
    attn = _levels(args.attn_levels) if args.attn_levels is not None else None
    if args.channels < 1:
        raise UserError(f"--channels {args.channels}: must be at least 1")
    try:
        generator = GeneratorConfig(in_channels=args.channels, out_channels=args.channels, width=args.width,
                                    depth=args.depth, blocks=_blocks(args.blocks), attn_levels=attn, scale=scale,
                                    block=args.block, unshuffle=args.unshuffle, noise_map=args.noise_map,
                                    upsampler=args.upsampler)
    except ValueError as err:
        raise UserError(f"model options: {err}")
    clean = [_weighted_folder(text) for text in args.clean]
    if args.dead_leaves and (args.data or args.aligned):
        raise UserError("--dead-leaves goes with --clean (or alone): paired data has no clean images to add to")
    fields = dict(
        out=args.out, data=args.data, aligned=args.aligned, val=args.val, clean=tuple(p for p, _ in clean),
        clean_weights=tuple(w for _, w in clean), dead_leaves=args.dead_leaves, degradation=degradation,
        generator=generator, load_size=args.load_size, crop=args.crop, augment=not args.no_augment,
        iters=args.iters if args.iters is not None else TrainConfig.iters, batch=args.batch, lr=args.lr,
        lr_decay_from=args.lr_decay_from,
        betas=(args.beta1, args.beta2), init_from=args.init_from, lr_schedule=args.lr_schedule,
        weight_decay=args.weight_decay, pixel_loss=args.pixel_loss, fft_weight=args.fft_weight,
        adv_weight=args.adv_weight, l1_weight=args.l1_weight, d_width=args.d_width, d_layers=args.d_layers,
        spectral_norm=args.spectral_norm, d_arch=args.d_arch, fm_weight=args.fm_weight,
        d_lr_mult=args.d_lr_mult, d_conditional=not args.d_unconditional,
        d_warmup=args.d_warmup, d_highpass=args.d_highpass, grid_weight=args.grid_weight,
        block_weight=args.block_weight,
        chroma_weight=args.chroma_weight, detail_weight=args.detail_weight,
        artifact_weight=args.artifact_weight,
        d_norm=args.d_norm or ("none" if args.spectral_norm or args.d_arch == "unet" else "instance"),
        seed=args.seed, device=args.device, workers=args.workers,
        save_every=args.save_every, keep=args.keep, sample_every=args.sample_every, log_every=args.log_every,
        max_pixels=int(args.max_pixels), precision=args.precision, ema=args.ema, accumulate=args.accumulate,
        compile=args.compile, channels_last=args.channels_last, cache_mb=args.cache_mb,
        tensorboard=args.tensorboard,
    )
    try:
        return TrainConfig(**fields)
    except ValueError as err:  # the checks live in the config, so the Python API has them too
        raise _option_error(err)


# Config fields whose command-line option has another name.
OPTION_OF_FIELD = {"poisson_peak": "poisson", "in_channels": "channels", "preset": "degrade"}


def _option_error(err: ValueError) -> UserError:
    """A config check's message ("name value: why") as the option the user typed ("--name value: why")."""
    text = str(err)
    field = text.split()[0]
    return UserError(f"--{OPTION_OF_FIELD.get(field, field).replace('_', '-')}{text[len(field):]}")


def _refuse_degradation_flags(args) -> None:
    """Paired data is used as it is: flags that degrade clean images would be ignored, so they are refused."""
    source = "--data" if args.data else "--aligned"
    given = [flag for flag, value in (("--sigma", args.sigma), ("--blur", args.blur), ("--jpeg", args.jpeg),
                                      ("--poisson", args.poisson or None), ("--salt-pepper", args.salt_pepper or None),
                                      ("--degrade", None if args.degrade == "custom" else args.degrade))
             if value is not None]
    if given:
        raise UserError(f"{' and '.join(given)}: {source} pairs are used as they are, degradations apply only to "
                        "--clean images and the built-in corpus; leave them out, or degrade clean images with --clean")
    if args.scale is not None and args.aligned:
        raise UserError("--scale: --aligned pairs have equal halves (scale 1); leave it out")
    if args.scale is not None:
        from sagan_restore.data.datasets import paired_data_scale

        found = paired_data_scale(args.data)
        if found != args.scale:
            raise UserError(f"--scale {args.scale}: the pairs in {args.data} are x{found} (targets {found} times "
                            "the inputs' size); leave --scale out, it is detected")


def run_train(args) -> int:
    from sagan_restore.allocator import keep_freed_memory
    from sagan_restore.distributed import is_main_process
    from sagan_restore.train import TrainingStopped, load_run_config, train

    keep_freed_memory()  # before the DataLoader's workers fork, so that they keep it too
    try:
        if args.resume:
            cfg = load_run_config(args.resume, iters=args.iters)
            out = train(cfg, resume=True, progress=not args.no_progress)
        else:
            out = train(train_config_from_args(args), progress=not args.no_progress)
    except TrainingStopped as stopped:
        if is_main_process():
            print(f"sagan-restore: {stopped}", file=sys.stderr)
        return 128 + stopped.signum  # the shell's convention for "ended by this signal"
    if is_main_process():
        print(f"finished: {out / 'generator.safetensors'}")
    return 0


def _blocks(text: str) -> int | tuple[int, ...]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--blocks {text}: expected a count or comma-separated counts, e.g. 1 or 1,1,2,4")
    return counts[0] if len(counts) == 1 else tuple(counts)


def _tile(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in pixels, 0 (no tiling) or auto, not {text!r}")


def add_enhance_parser(sub) -> None:
    p = sub.add_parser("enhance", help="apply a trained generator to images",
                       description="Enhance image files, folders or glob patterns; outputs keep name, format, "
                                   "bit depth, alpha and ICC/EXIF metadata. Large images are processed in "
                                   "overlapping tiles that are blended without seams.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="image files, folders or quoted glob patterns such as 'photos/*.jpg'")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument("-n", "--model",
                   help="pretrained model name (see `sagan-restore models`; default denoise, or the srN model "
                        "for --scale N), run folder, .safetensors file or .pt checkpoint. A pretrained name "
                        "wins over a file or folder of the same name; write ./NAME for those")
    p.add_argument("--scale", type=int, help="upscale by this factor with the shipped model for it (2 or 4)")
    p.add_argument("-s", "--outscale", type=float, metavar="FACTOR",
                   help="final size as a factor of the input's, any value (e.g. 3 or 1.5): the model's scale, "
                        "then a Lanczos resize to this factor, as Real-ESRGAN's --outscale. Without --model "
                        "or --scale it picks the shipped model: the restoration model for 1, x2 up to 2, x4 above")
    p.add_argument("--realism", type=float, metavar="R",
                   help="0 = most faithful (highest PSNR) .. 1 = sharpest (the GAN variant); values between "
                        "interpolate the two models' weights. Default: the model's documented point (see "
                        "`sagan-restore models`), 0 for your own models")
    p.add_argument("--realism-model", metavar="M",
                   help="the GAN fine-tune of your own --model that --realism leans towards")
    p.add_argument("--strength", type=float, default=1.0, metavar="S",
                   help="how hard to denoise (default 1). real-restore (a model with NAME_light.safetensors "
                        "beside it): 0-1, 0 removes JPEG artefacts and keeps the grain, 1 removes the noise too. "
                        "denoise (models trained with --noise-map): 0-4, the noise they are told there is as a "
                        "multiple of their own estimate; 0.5 keeps more grain and fine detail, 2 smooths more")
    p.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    files = p.add_argument_group("files")
    files.add_argument("--recursive", action="store_true",
                       help="also enhance images in subfolders (outputs keep the folder structure); "
                            "lets ** in patterns match folders")
    files.add_argument("--suffix", default="", help="added to output file names, e.g. _clean")
    files.add_argument("--ext", choices=["auto", "png", "jpg", "webp", "tif"], default="auto",
                       help="output format; auto (default) keeps each input's (GIF becomes PNG)")
    files.add_argument("--overwrite", action="store_true", help="replace existing outputs (never inputs)")
    files.add_argument("--skip-existing", action="store_true", help="leave existing outputs, enhance the rest")
    files.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality of outputs, 1-100 (default 95)")
    files.add_argument("--max-pixels", type=float, default=200e6,
                       help="refuse larger images, as possible decompression bombs (default 200e6); GeoTIFFs "
                            "are streamed, never held whole, and not limited by it")
    rasters = p.add_argument_group("rasters (GeoTIFF, DICOM)")
    rasters.add_argument("--bands", type=_bands, metavar="LIST",
                         help="raster bands the model sees, 1-based, in the model's channel order, e.g. 3,2,1 "
                              "(RGB from a blue, green, red, NIR raster); with a 1-channel model, the bands "
                              "to enhance one by one, or 'all'. Needed when a raster's band count differs "
                              "from the model's channels (a 1-band raster in a colour model excepted)")
    speed = p.add_argument_group("tiling and speed")
    speed.add_argument("-t", "--tile", type=_tile, default=None, metavar="PIXELS",
                       help="tile size in input pixels; 0 = whole image at once; auto (default) = from free memory")
    speed.add_argument("--overlap", type=int, default=32, help="pixels shared by neighbouring tiles (default 32)")
    speed.add_argument("--batch", type=int, help="tiles per forward pass (default: automatic)")
    speed.add_argument("--precision", choices=("auto", "fp32", "half"), default="auto",
                       help="half: bf16 (fp16 on a GPU without bf16) autocast; fp32: float32; auto (default): "
                            "half on a CPU with native bf16 (AVX512-BF16 or AMX) or a GPU with bf16, where the "
                            "network takes about 0.6x the time for 0.005 dB or less, float32 elsewhere")
    speed.add_argument("--half", dest="precision", action="store_const", const="half",
                       help="the same as --precision half")
    speed.add_argument("--compile", action="store_true",
                       help="torch.compile the model (inductor); each tile shape compiles first, about a "
                            "minute on CPU")
    speed.add_argument("--self-ensemble", action="store_true",
                       help="average the model's outputs for the 8 flips and quarter turns of each tile: "
                            "7-8x the network time for +0.03 to +0.10 dB on the shipped models measured "
                            "(docs/BENCHMARKS.md); meant for --realism 0, as a GAN's invented texture "
                            "averages away")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(command=run_enhance, exit_at_once=True)


def _bands(text: str) -> tuple[int, ...] | str:
    if text.strip().lower() == "all":
        return "all"
    try:
        bands = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected band numbers such as 3,2,1 or 'all', not {text!r}")
    if len(set(bands)) != len(bands) or min(bands) < 1:
        raise argparse.ArgumentTypeError(f"expected distinct band numbers from 1 up, not {text!r}")
    return bands


PRECISION_HALF = {"auto": None, "fp32": False, "half": True}  # --precision as Enhancer's `half`


def run_enhance(args) -> int:
    from sagan_restore import distributed
    from sagan_restore.allocator import keep_freed_memory
    from sagan_restore.devices import pick_device
    from sagan_restore.infer.enhance import Enhancer, enhance_files

    if not 1 <= args.quality <= 100:
        raise UserError(f"--quality {args.quality}: must be between 1 and 100")
    if args.max_pixels < 1:
        raise UserError(f"--max-pixels must be at least 1, not {args.max_pixels:g}")
    if args.outscale is not None and not 0 < args.outscale <= 16:
        raise UserError(f"--outscale {args.outscale:g}: must be above 0 and at most 16")
    keep_freed_memory()
    # Under torchrun each process enhances its share of the files, on its own GPU (cuda:LOCAL_RANK).
    with distributed.session(pick_device(args.device)) as (rank, device):
        enhancer = Enhancer.load(enhance_model(args.model, args.scale, args.outscale), device=str(device),
                                 tile=args.tile, overlap=args.overlap, batch=args.batch,
                                 half=PRECISION_HALF[args.precision], compile=args.compile,
                                 realism=args.realism, realism_model=args.realism_model,
                                 strength=args.strength, self_ensemble=args.self_ensemble)
        if args.scale is not None and enhancer.scale != args.scale:
            raise UserError(f"--scale {args.scale}: --model {args.model} upscales x{enhancer.scale}; leave out one "
                            f"of the two")
        report = enhance_files(enhancer, args.inputs, args.out, suffix=args.suffix, overwrite=args.overwrite,
                               skip_existing=args.skip_existing, recursive=args.recursive, quality=args.quality,
                               max_pixels=int(args.max_pixels), progress=not args.no_progress and rank.is_main,
                               ext=None if args.ext == "auto" else f".{args.ext}", outscale=args.outscale,
                               bands=args.bands, rank=rank)
    where = f"process {rank.rank} of {rank.world_size}: " if rank.is_distributed else ""
    print(where + report.summary(args.out, enhancer.precision))
    return 1 if report.failed else 0


def enhance_model(model: str | None, scale: int | None, outscale: float | None = None) -> str:
    """--model wins; else --scale N picks the shipped model for that factor; else --outscale picks the smallest
    shipped factor that reaches it (2 up to 2, 4 above); else the restoration model (zoo.default_for: the
    real-photo models where shipped)."""
    from sagan_restore.models import zoo

    if model is not None:
        return model
    if scale is None and outscale is not None and outscale > 1:
        scale = 2 if outscale <= 2 else 4
    return zoo.default_for(scale).name


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="export a generator to ONNX",
                       description="Write the full generator (any height and width, no tiling inside) as an "
                                   "ONNX model; tiling large images stays in Python (sagan_restore.infer.tiling).")
    p.add_argument("--model", required=True, help="run folder, .safetensors file or .pt checkpoint")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="FILE", help="output file, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-check", action="store_true",
                   help="skip comparing onnxruntime's output with PyTorch's on a test image")
    p.set_defaults(command=run_export)


def run_export(args) -> int:
    from sagan_restore.export import check_onnx, export_onnx

    export_onnx(args.model, args.out, opset=args.opset, overwrite=args.overwrite)
    print(f"wrote {args.out}")
    if not args.no_check:
        print(check_onnx(args.out, args.model))
    return 0


def add_models_parser(sub) -> None:
    p = sub.add_parser("models", help="list the pretrained models shipped with the package, with their scores")
    p.add_argument("-v", "--verbose", action="store_true", help="every measured score and the training details")
    p.set_defaults(command=run_models)


def run_models(args) -> int:
    from sagan_restore.checkpoint import load_generator
    from sagan_restore.models import zoo

    models = zoo.shipped()
    if not models:
        print("no pretrained models are shipped in this installation")
        return 0
    if not args.verbose:
        print(_models_table(models))
        return 0
    for m in models:
        _, info = load_generator(m.path)
        steps, params = info.get("steps"), info.get("parameters")
        print(f"{m.name}: {m.summary}")
        print(f"  {params / 1e6:.2f} M parameters, {info.get('gflops_per_mp')} GFLOPs per input megapixel, "
              f"{steps} training steps, recipe {info.get('recipe')}")
        for score in info.get("scores", []):
            print(f"  {_score_line(score)}")
        if m.has_realism:
            _, gan_info = load_generator(m.realism_path)
            print(f"  realism variant (GAN fine-tune, {gan_info.get('steps')} steps, recipe "
                  f"{gan_info.get('recipe')}); enhance uses --realism {m.default_realism:g} unless told")
            for score in gan_info.get("scores", []):
                print(f"  {_score_line(score)}")
        if m.strength_path is not None:
            _, light_info = load_generator(m.strength_path)
            print(f"  light variant for --strength ({light_info.get('steps')} steps, recipe "
                  f"{light_info.get('recipe')}): --strength 0 is it, 1 (the default) the model")
            for score in light_info.get("scores", []):
                print(f"  {_score_line(score)}")
    return 0


def _models_table(models) -> str:
    """name, task, parameters, one headline score (sigma 25 for denoisers, else the first measured) and its
    seconds per megapixel where it was measured; `models --verbose` has the rest."""
    from sagan_restore.checkpoint import load_generator

    rows = [("name", "task", "params", "headline score", "s/MP", "realism")]
    for m in models:
        _, info = load_generator(m.path)
        scores = info.get("scores", [])
        head = next((sc for sc in scores if sc.get("sigma") == 25 and sc.get("input", "unclipped") == "unclipped"),
                    scores[0] if scores else None)
        level = "" if head is None else (f"sigma {head['sigma']:g}" if "sigma" in head else f"x{head.get('scale')}")
        task = "denoise" if m.scale == 1 else f"x{m.scale} SR"
        rows.append((m.name, task, f"{info.get('parameters', 0) / 1e6:.1f} M",
                     f"{head['set']} {level}: {head['psnr']:.2f} dB" if head else "not measured",
                     f"{head['sec_per_mp']:.1f}" if head and "sec_per_mp" in head else "-",
                     f"default {m.default_realism:g}" if m.has_realism else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines + ["", "sagan-restore models --verbose: every score; docs/MODELS.md: the model cards"])


def _score_line(score: dict) -> str:
    level = f"sigma {score['sigma']:g}" if "sigma" in score else f"x{score.get('scale')}"
    realism = f" at realism {score['realism']:g}" if "realism" in score else ""
    realism += " (8-bit input)" if score.get("input") == "8bit" else ""
    sharpness = f", sharpness {score['sharpness']:.2f}" if "sharpness" in score else ""
    return f"{score['set']} {level}{realism}: {score['psnr']:.2f} dB PSNR, SSIM {score['ssim']:.4f}{sharpness}"


def _device(text: str) -> str:
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N (a GPU's index), not {text!r}")


def _number_list(text: str, *, kind, option: str) -> tuple:
    try:
        values = tuple(kind(t) for t in text.split(","))
    except ValueError:
        raise UserError(f"{option} {text}: expected comma-separated numbers, e.g. 15,25,50")
    if any(v < 0 for v in values):
        raise UserError(f"{option} {text}: values must not be negative")
    return values


def _names(text: str) -> tuple[str, ...]:
    return () if text.strip().lower() in ("", "none") else tuple(t.strip() for t in text.split(",") if t.strip())


def add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score models and classical baselines on test sets, side by side",
                       description="Score models and baselines on the same inputs with the published protocol "
                                   "(noise from default_rng(image index), unclipped; SR on the Y channel with "
                                   "the border shaved) and write results.json, results.md and comparison "
                                   "figures.")
    p.add_argument("--set", dest="sets", action="append", type=Path, required=True, metavar="DIR",
                   help="test set: a folder of clean images (denoise), HR/ [+ LR_bicubic/X{s}/] (sr; without "
                        "LR files, HR is bicubic-downscaled), or lr/ + hr/ pairs; repeat for several sets")
    p.add_argument("--model", dest="models", action="append", default=[], metavar="M",
                   help="pretrained name, run folder, .safetensors file or .pt checkpoint; repeat to compare")
    p.add_argument("--realism", help="realism points to score for models with a GAN variant, e.g. 0,0.5,1 "
                                     "(default: each model's documented point)")
    p.add_argument("--strength", help="enhance --strength values to score for models with a light variant or "
                                      "a noise-level input, e.g. 0,0.5,1 (default 1)")
    p.add_argument("--task", choices=["denoise", "sr"], default="denoise")
    p.add_argument("--sigma", default="25", help="noise levels (0..255 scale), e.g. 15,25,50 (default 25)")
    p.add_argument("--scale", default="4", help="upscaling factors, e.g. 2,4 (default 4)")
    p.add_argument("--baselines", help="other methods run on the same inputs: noisy,nlm,bm3d,ffdnet (denoise; "
                                       "default noisy) or bicubic,lanczos,span,waifu2x,realesrgan (sr; default "
                                       "bicubic); none for none")
    p.add_argument("--quantized-input", action="store_true",
                   help="clip and round noisy inputs to 8 bits, as a saved file would be, instead of the "
                        "protocol's unclipped float input")
    p.add_argument("--out", type=Path, default=Path("runs/evaluate"), help="results folder (default runs/evaluate)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--figure-images", type=int, default=3, metavar="N", help="images per comparison figure")
    p.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--tile", type=_tile, default=None, metavar="PIXELS",
                   help="models' tile size in input pixels; 0 = whole image at once; auto (default) = from "
                        "free memory, as enhance does")
    p.add_argument("--threads", type=int, help="CPU threads for models (default: torch's choice); the "
                                               "baselines run on one, so --threads 1 compares like with like")
    p.add_argument("--half", action="store_true",
                   help="models in bf16/fp16 autocast, as enhance --half (a CPU without native bf16 stays in "
                        "float32, with a warning)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="models average their outputs over the 8 flips and quarter turns, as enhance "
                        "--self-ensemble (their rows are named NAME x8)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(command=run_evaluate)


def evaluate_config_from_args(args):
    from sagan_restore.config import EvaluateConfig

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA GPU is available here; use --device cpu")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, not {args.threads}")
    if args.figure_images < 0:
        raise UserError(f"--figure-images must be 0 or more, not {args.figure_images}")
    scales = _number_list(args.scale, kind=int, option="--scale")
    if any(s < 1 for s in scales):
        raise UserError(f"--scale {args.scale}: factors must be at least 1")
    default_baselines = "noisy" if args.task == "denoise" else "bicubic"
    return EvaluateConfig(
        sets=tuple(args.sets), task=args.task, sigmas=_number_list(args.sigma, kind=float, option="--sigma"),
        scales=scales, models=tuple(args.models),
        realism=_number_list(args.realism, kind=float, option="--realism") if args.realism else (),
        strengths=_number_list(args.strength, kind=float, option="--strength") if args.strength else (),
        baselines=_names(args.baselines if args.baselines is not None else default_baselines),
        quantized_input=args.quantized_input, device=args.device, threads=args.threads, tile=args.tile,
        half=args.half, self_ensemble=args.self_ensemble, figure_images=args.figure_images,
    )


def run_evaluate(args) -> int:
    from sagan_restore.allocator import keep_freed_memory
    from sagan_restore.evaluation.methods import applies, build_methods
    from sagan_restore.evaluation.report import markdown_tables, write_report
    from sagan_restore.evaluation.runner import evaluate
    from sagan_restore.evaluation.sets import conditions_for, open_test_set

    cfg = evaluate_config_from_args(args)
    if (args.out / "results.json").exists() and not args.overwrite:
        raise UserError(f"--out {args.out}: results.json already there (pass --overwrite to replace it)")
    test_sets = [open_test_set(root) for root in cfg.sets]  # a bad --set fails before any model loads
    conditions = [c for test_set in test_sets for c in conditions_for(test_set, cfg)]
    methods = build_methods(cfg)
    keep_freed_memory()
    unused = [m.name for m in methods if not any(applies(m, c) for c in conditions)]
    if unused:
        raise UserError(f"--model {', '.join(unused)}: no set or --scale here matches the model's factor "
                        f"({', '.join(f'x{m.scale}' for m in methods if m.name in unused)})")
    report = evaluate(cfg, progress=not args.no_progress, methods=methods, test_sets=test_sets)
    written = write_report(report, args.out, overwrite=args.overwrite)
    print(markdown_tables(report.records))
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="a local web page to enhance images with a before/after view",
                       description="Start a web app on this machine: drop images on the page, pick a model, "
                                   "compare before and after, download the result in the input's format.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; there is no password)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--model", dest="models", action="append", default=[], metavar="M",
                   help="offer this model (pretrained name, run folder, .safetensors or .pt); repeat for "
                        "several (default: every shipped pretrained model)")
    p.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--tile", type=_tile, default=None, metavar="PIXELS",
                   help="tile size in input pixels; 0 = whole image at once; auto (default) = from free memory")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-upload-mb", type=float, default=100.0, help="largest upload (default 100 MB)")
    limits.add_argument("--max-pixels", type=float, default=25e6,
                        help="largest result in pixels, input pixels x scale^2 (default 25e6)")
    limits.add_argument("--queue", type=int, default=8, help="images waiting at most (default 8)")
    limits.add_argument("--keep-minutes", type=float, default=60.0,
                        help="results are deleted this long after they are ready (default 60)")
    p.set_defaults(command=run_serve)


def serve_config_from_args(args):
    from sagan_restore.config import ServeConfig

    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port}: expected 1-65535")
    for option, value in (("--max-upload-mb", args.max_upload_mb), ("--max-pixels", args.max_pixels),
                          ("--queue", args.queue), ("--keep-minutes", args.keep_minutes)):
        if value <= 0:
            raise UserError(f"{option} {value:g}: must be positive")
    return ServeConfig(host=args.host, port=args.port, models=tuple(args.models), device=args.device,
                       tile=args.tile, max_upload_mb=args.max_upload_mb, max_pixels=int(args.max_pixels),
                       queue=args.queue, keep_minutes=args.keep_minutes)


def run_serve(args) -> int:
    try:
        import uvicorn

        from sagan_restore.serve.app import create_app, is_loopback
    except ModuleNotFoundError as err:
        raise UserError(f"serve needs the web extra ({err.name} is missing): pip install 'sagan-restore[web]'")
    cfg = serve_config_from_args(args)
    if not is_loopback(cfg.host):
        warnings.warn(f"--host {cfg.host}: every machine that can reach this one can use the page, with no "
                      "password; use the default 127.0.0.1 unless you mean that")
    app = create_app(cfg)
    print(f"sagan-restore: open http://{cfg.host}:{cfg.port}/ "
          "(Ctrl+C stops)", file=sys.stderr)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sagan-restore", description="Denoise and upscale images with a self-attention U-Net GAN.")
    sub = parser.add_subparsers(title="commands", required=True)
    add_train_parser(sub)
    add_enhance_parser(sub)
    add_models_parser(sub)
    add_export_parser(sub)
    add_evaluate_parser(sub)
    add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser().parse_args(argv))


def run() -> None:
    """The `sagan-restore` program. After `enhance`, whose files are all written and closed when it returns,
    the process ends at once: the interpreter's teardown of a process that imported torch takes about 0.9 s
    on the machines here (a sixth of a 1-megapixel enhance end to end, docs/BENCHMARKS.md), and does nothing
    a finished enhance needs. Other commands exit normally (a training run's workers and writers close then)."""
    args = build_parser().parse_args()
    code = dispatch(args)
    if getattr(args, "exit_at_once", False):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (BrokenPipeError, ValueError):  # a reader that stopped early, or a stream already closed
                pass
        os._exit(code)
    sys.exit(code)


def dispatch(args: argparse.Namespace) -> int:
    warnings.formatwarning = lambda message, category, *rest: f"sagan-restore: warning: {message}\n"
    try:
        code = args.command(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at interpreter exit
        return code
    except UserError as err:
        print(f"sagan-restore: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sagan-restore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped early, e.g. `| head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
