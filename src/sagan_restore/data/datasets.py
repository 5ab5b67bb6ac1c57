"""Training data: where pairs come from (paired folders, side-by-side files, clean images to degrade,
the built-in corpus) and how one training sample is cut from them.

Every sample is a pure function of (seed, sample index): index i draws its image, crop, flips and noise
from `default_rng([seed, i])`. Resuming at step k therefore replays exactly what an uninterrupted run
would have seen, whatever the number of DataLoader workers or processes.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import warnings
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sagan_restore.config import DegradationConfig, TrainConfig
from sagan_restore.data import corpus
from sagan_restore.data.degradations import degrade_pair, gaussian_noise
from sagan_restore.errors import UserError
from sagan_restore.formats.raster import (fill_nodata, measure_value_range, normalize, raster_kind, raster_size,
                                          read_raster, sample_values)
from sagan_restore.io import DECODER_ERRORS, IMAGE_SUFFIXES, list_images, read_image, resize, to_channels

PAIRED_FOLDER_NAMES = (("lr", "hr"), ("input", "target"), ("A", "B"))
DEAD_LEAVES_COUNT = 48  # procedural images added to the built-in corpus
DEAD_LEAVES_SIZE = 256
BUILTIN_DEAD_LEAVES_SHARE = 0.3  # of built-in corpus samples; the 13 photos give the rest


def _load_pixels(path: Path, cfg: TrainConfig) -> np.ndarray:
    """Pixels of a training image: alpha ignored, converted to the model's channel count. Rasters
    (GeoTIFF, DICOM) are read by the readers `enhance` uses, normalised by the run's value range, their
    nodata filled as `enhance` fills it."""
    channels = cfg.generator.in_channels
    kind = raster_kind(path)
    if kind is None:
        if channels not in (1, 3):
            raise UserError(f"{path}: a photo, but --channels {channels} trains on rasters (GeoTIFF, DICOM) of "
                            f"{channels} bands; photos train 1- or 3-channel models")
        return to_channels(read_image(path, max_pixels=cfg.max_pixels).pixels, channels)
    values, valid = read_raster(path, kind, max_pixels=cfg.max_pixels)
    _check_bands(path, values.shape[2], channels)
    if cfg.value_range is None:
        raise UserError(f"{path}: a raster, and this run has no value range to normalise it with; "
                        "pass the config through data.datasets.with_value_range first")
    return fill_nodata(normalize(values, cfg.value_range), valid)


def _check_bands(path: Path, bands: int, channels: int) -> None:
    if bands != channels:
        raise UserError(f"{path}: {bands} band(s), but the model is trained with --channels {channels}; every "
                        f"training raster needs that many bands (pass --channels {bands} if they all have {bands})")


def _training_files(cfg: TrainConfig) -> list[Path]:
    """The target images of the run's data (paired targets, side-by-side files, --clean folders)."""
    if cfg.data is not None:
        return list_images(find_paired_folders(cfg.data)[1])
    if cfg.aligned is not None and cfg.aligned.is_dir():
        return list_images(cfg.aligned)
    return [p for folder in cfg.clean if folder.is_dir() for p in list_images(folder)]


def with_value_range(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with the value range its raster data is normalised by: the one it has (a resumed run keeps
    its own), else per-band percentiles measured on the training targets (formats.raster); unchanged for
    photos, which keep the 0..255 / 0..65535 scale. Photos and rasters are not mixed in one run."""
    if cfg.value_range is not None:
        return cfg
    files = _training_files(cfg)
    rasters = [(p, kind) for p in files if (kind := raster_kind(p)) is not None]
    if not rasters:
        return cfg
    if len(rasters) < len(files):
        photo = next(p for p in files if raster_kind(p) is None)
        raise UserError(f"the training data mixes {len(rasters)} raster(s) (GeoTIFF, DICOM) with "
                        f"{len(files) - len(rasters)} photo(s) such as {photo}; their values mean different "
                        "things, so train on one kind")
    samples = []
    for path, kind in rasters:
        values, valid = read_raster(path, kind, max_pixels=cfg.max_pixels)
        _check_bands(path, values.shape[2], cfg.generator.in_channels)
        samples.append(sample_values(values, valid))
    if cfg.degradation.quantize_share > 0 and cfg.data is None and cfg.aligned is None:  # degraded on the fly
        warnings.warn(f"--quantize-share {cfg.degradation.quantize_share:g} rounds that share of raster inputs to "
                      "8 bits of the value range (clipping what lies outside it); pass --quantize-share 0 to "
                      "train on their full precision")
    return dataclasses.replace(cfg, value_range=measure_value_range(samples, files=len(rasters)))


def _resize_shorter_side(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    factor = size / min(h, w)
    return resize(img, (max(round(w * factor), 1), max(round(h * factor), 1)), Image.Resampling.LANCZOS)


class ImageSource:
    """A list of training images, decoded on first use and kept in memory as float32 arrays while they fit
    in `cache_bytes` (the first ones decoded stay; later ones are decoded again at each use).

    The up-front `check` decodes in the main process, before DataLoader workers start, so with a dataset
    that fits, the workers inherit every decoded image instead of decoding their own copies.
    `weights`, if given, are the probabilities of drawing each image (they sum to 1); else uniform.
    """

    def __init__(self, loaders: list, names: list[str], weights: np.ndarray | None = None, *,
                 cache_bytes: int | None = None):
        self._loaders = loaders
        self.names = names
        self.weights = weights
        self.cache_bytes = cache_bytes  # None: no limit
        self._cache: dict[int, np.ndarray] = {}
        self._cached_bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._loaders)

    def draw(self, rng: np.random.Generator) -> int:
        if self.weights is None:
            return int(rng.integers(len(self)))
        return int(rng.choice(len(self), p=self.weights))

    def get(self, k: int) -> np.ndarray:
        img = self._cache.get(k)
        if img is None:
            img = self._loaders[k]()
            with self._lock:
                if self.cache_bytes is None or self._cached_bytes + img.nbytes <= self.cache_bytes:
                    self._cache[k] = img
                    self._cached_bytes += img.nbytes
        return img

    def check(self, indices: Iterable[int] | None = None, *, min_size: int) -> tuple[list[str], list[str]]:
        """Decode the images (all, or those at `indices`) now, so that all problems are reported together
        before training starts instead of one at a time from inside a DataLoader worker, hours in. Returns
        what is wrong with each bad image, and the images smaller than `min_size` (to be mirror-padded)."""
        def look(k: int) -> tuple[str | None, str | None]:
            try:
                h, w = self.get(k).shape[:2]
            except UserError as err:
                return str(err), None
            return None, f"{self.names[k]} ({w}x{h})" if min(h, w) < min_size else None

        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # decoders release the GIL
            found = list(pool.map(look, range(len(self)) if indices is None else indices))
        return [p for p, _ in found if p], [s for _, s in found if s]


@dataclass
class PairedSource:
    """Aligned (input, target) images; the target is `scale` times the input's size."""

    inputs: ImageSource
    targets: ImageSource
    scale: int

    def __len__(self) -> int:
        return len(self.targets)


def paired_subfolders(root: Path) -> tuple[Path, Path] | None:
    """(inputs, targets) subfolders of a paired folder (lr/ + hr/, input/ + target/ or A/ + B/), or None."""
    for lr_name, hr_name in PAIRED_FOLDER_NAMES:
        if (root / lr_name).is_dir() and (root / hr_name).is_dir():
            return root / lr_name, root / hr_name
    return None


def find_paired_folders(root: Path) -> tuple[Path, Path]:
    if not root.is_dir():
        raise UserError(f"--data {root}: no such folder")
    found = paired_subfolders(root)
    if found is not None:
        return found
    raise UserError(f"--data {root}: expected subfolders lr/ + hr/, input/ + target/ or A/ + B/")


def _match_by_stem(lr_dir: Path, hr_dir: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Files paired by stem, and one line for each file without a partner."""
    lr = {p.stem: p for p in list_images(lr_dir)}
    hr = {p.stem: p for p in list_images(hr_dir)}
    problems = [f"{lr[s]} has no partner in {hr_dir}" for s in sorted(lr.keys() - hr.keys())]
    problems += [f"{hr[s]} has no partner in {lr_dir}" for s in sorted(hr.keys() - lr.keys())]
    return [(lr[s], hr[s]) for s in sorted(lr.keys() & hr.keys())], problems


def match_pairs(lr_dir: Path, hr_dir: Path) -> list[tuple[Path, Path]]:
    """Pair files by stem; every file without a partner is reported at once."""
    pairs, problems = _match_by_stem(lr_dir, hr_dir)
    if problems:
        raise UserError("paired data has unmatched files:\n  " + "\n  ".join(problems))
    if not pairs:
        raise UserError(f"{lr_dir} and {hr_dir} hold no images")
    return pairs


def _image_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from the header, without decoding the pixels; None if the header is unreadable."""
    kind = raster_kind(path)
    if kind is not None:
        try:
            return raster_size(path, kind)
        except UserError:
            return None
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
                return int(shape[0]), int(shape[1])
        with warnings.catch_warnings():
            # Only the header is read, so Pillow's bomb guard has nothing to guard; read_image applies ours.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.height, im.width
    except (*DECODER_ERRORS, Image.DecompressionBombError):
        return None


def _exact_scale(lr_size: tuple[int, int], hr_size: tuple[int, int]) -> int | None:
    """The factor from input to target size if it is one the generator supports, else None."""
    (lh, lw), (hh, hw) = lr_size, hr_size
    if hh % lh or hw % lw or hh // lh != hw // lw or hh // lh not in (1, 2, 3, 4):
        return None
    return hh // lh


def _scale_and_problems(pairs: list[tuple[Path, Path]]) -> tuple[int, list[str]]:
    """The integer factor between targets and inputs shared by most pairs, and a line for each pair that
    does not have it. Pairs with an unreadable header are left to the decoding check."""
    sizes = {pair: (_image_size(pair[0]), _image_size(pair[1])) for pair in pairs}
    sizes = {pair: both for pair, both in sizes.items() if None not in both}
    scales = {pair: _exact_scale(*both) for pair, both in sizes.items()}
    counts = Counter(s for s in scales.values() if s is not None)
    scale = counts.most_common(1)[0][0] if counts else 1
    problems = []
    for (lr_path, hr_path), found in scales.items():
        if found != scale:
            (lh, lw), (hh, hw) = sizes[(lr_path, hr_path)]
            problems.append(f"{hr_path} is {hw}x{hh}, not {scale}x the size of {lr_path} ({lw}x{lh}); "
                            f"most pairs have scale {scale}")
    return scale, problems


def pair_scale(pairs: list[tuple[Path, Path]]) -> int:
    """The common integer factor between targets and inputs; every mismatch is reported at once."""
    scale, problems = _scale_and_problems(pairs)
    if problems:
        raise UserError("paired data sizes do not match:\n  " + "\n  ".join(problems))
    return scale


def paired_data_scale(root: Path) -> int:
    """The scale most pairs under `root` have (1 if none can be read). Problems are left to
    `build_source`, which reports them all at once."""
    lr_dir, hr_dir = find_paired_folders(root)
    return _scale_and_problems(_match_by_stem(lr_dir, hr_dir)[0])[0]


def _report(problems: list[str], small: list[str], *, what: str, crop: int) -> None:
    """One error listing every bad file; else one warning for the images that need padding."""
    if problems:
        raise UserError(f"{what}: {len(problems)} problem(s), nothing was trained:\n  " + "\n  ".join(problems))
    if small:
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        warnings.warn(f"{len(small)} training image(s) smaller than the {crop}-pixel crop will be "
                      f"mirror-padded: {', '.join(small[:5])}{more}")


def paired_source(cfg: TrainConfig) -> PairedSource:
    """Pairs from lr/+hr/ style folders. Missing partners, unreadable files and sizes off the common scale
    are all listed in one error, before training starts."""
    lr_dir, hr_dir = find_paired_folders(cfg.data)
    pairs, problems = _match_by_stem(lr_dir, hr_dir)
    if not pairs and not problems:
        raise UserError(f"--data {cfg.data}: {lr_dir} and {hr_dir} hold no images")
    scale, size_problems = _scale_and_problems(pairs)

    def loader(path: Path, size: int | None):
        def load():
            img = _load_pixels(path, cfg)
            return _resize_shorter_side(img, size) if size else img
        return load

    hr_size = cfg.load_size
    lr_size = hr_size // scale if hr_size else None
    names = [hr.name for _, hr in pairs]
    source = PairedSource(
        inputs=ImageSource([loader(lr, lr_size) for lr, _ in pairs], [lr.name for lr, _ in pairs],
                           cache_bytes=_cache_bytes(cfg) // (scale * scale + 1)),
        targets=ImageSource([loader(hr, hr_size) for _, hr in pairs], names,
                            cache_bytes=_cache_bytes(cfg) * scale * scale // (scale * scale + 1)),
        scale=scale,
    )
    input_problems, _ = source.inputs.check(min_size=0)
    target_problems, small = source.targets.check(min_size=cfg.crop)  # inputs are as small, over the scale
    _report(problems + input_problems + target_problems + size_problems, small, what=f"--data {cfg.data}",
            crop=cfg.crop)
    return source


def aligned_source(cfg: TrainConfig) -> PairedSource:
    """pix2pix's aligned format: each file holds input | target side by side, halves of equal size."""
    if not cfg.aligned.is_dir():
        raise UserError(f"--aligned {cfg.aligned}: no such folder")
    paths = list_images(cfg.aligned)
    if not paths:
        raise UserError(f"--aligned {cfg.aligned}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")

    def half(path: Path, side: int):
        def load():
            img = _load_pixels(path, cfg)
            if img.shape[1] % 2:
                raise UserError(f"{path}: width {img.shape[1]} is odd; side-by-side images need an even width")
            w = img.shape[1] // 2
            img = img[:, side * w:(side + 1) * w]
            return _resize_shorter_side(img, cfg.load_size) if cfg.load_size else img
        return load

    names = [p.name for p in paths]
    halves = [ImageSource([half(p, side) for p in paths], names, cache_bytes=_cache_bytes(cfg) // 2)
              for side in (0, 1)]
    source = PairedSource(*halves, scale=1)
    _report(*source.inputs.check(min_size=cfg.crop), what=f"--aligned {cfg.aligned}", crop=cfg.crop)
    source.targets.check(min_size=0)  # the other halves of the same files: decoded, known to be good
    return source


def clean_source(cfg: TrainConfig) -> ImageSource:
    """Images from each --clean folder (and dead leaves if asked for), drawn with the folders' weights.

    Within a folder an image is drawn in proportion to its pixel count, so every region of the data is
    equally likely to be cropped whatever the image sizes. Every file is decoded before training starts,
    and all bad ones are reported together.
    """
    groups, files = [], []
    for folder, weight in zip(cfg.clean, cfg.clean_weights):
        if not folder.is_dir():
            raise UserError(f"--clean {folder}: no such folder")
        paths = list_images(folder)
        if not paths:
            raise UserError(f"--clean {folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
        areas = np.array([_area(p) for p in paths], dtype=np.float64)
        groups.append(([_clean_loader(p, cfg) for p in paths], [p.name for p in paths], areas, weight))
        files += paths
    if cfg.dead_leaves > 0:
        groups.append((*_dead_leaves(cfg), np.ones(DEAD_LEAVES_COUNT), cfg.dead_leaves))
    source = _weighted_source(groups, cfg)
    folders = ", ".join(str(folder) for folder in cfg.clean)
    _report(*source.check(range(len(files)), min_size=cfg.crop), what=f"--clean {folders}", crop=cfg.crop)
    return source


def _area(path: Path) -> float:
    """Pixel count from the header; 1 for a file whose header does not read (the decoding check reports it)."""
    size = _image_size(path)
    return float(size[0] * size[1]) if size else 1.0


def _weighted_source(groups: list[tuple[list, list[str], np.ndarray, float]], cfg: TrainConfig) -> ImageSource:
    total = sum(weight for *_, weight in groups)
    loaders, names, probabilities = [], [], []
    for group_loaders, group_names, sizes, weight in groups:
        loaders += group_loaders
        names += group_names
        probabilities.append(sizes / sizes.sum() * weight / total)
    return ImageSource(loaders, names, np.concatenate(probabilities), cache_bytes=_cache_bytes(cfg))


def _cache_bytes(cfg: TrainConfig) -> int:
    return cfg.cache_mb * 2**20


def _clean_loader(path: Path, cfg: TrainConfig):
    def load():
        img = _load_pixels(path, cfg)
        return _resize_shorter_side(img, cfg.load_size) if cfg.load_size else img
    return load


def _dead_leaves(cfg: TrainConfig) -> tuple[list, list[str]]:
    """A fixed pool of dead-leaves images, the same for every run (independent of the training seed)."""
    channels = cfg.generator.in_channels

    def leaves(i: int):
        return lambda: corpus.dead_leaves(DEAD_LEAVES_SIZE, np.random.default_rng([7, i]), channels=channels)

    return [leaves(i) for i in range(DEAD_LEAVES_COUNT)], [f"dead_leaves_{i:03d}" for i in range(DEAD_LEAVES_COUNT)]


def builtin_source(cfg: TrainConfig) -> ImageSource:
    """scikit-image's photos (by pixel count) plus dead leaves (a BUILTIN_DEAD_LEAVES_SHARE of samples)."""
    paths = corpus.builtin_photo_paths()
    areas = np.array([np.prod(_image_size(p)) for p in paths], dtype=np.float64)
    photos = ([_clean_loader(p, cfg) for p in paths], [p.name for p in paths], areas, 1 - BUILTIN_DEAD_LEAVES_SHARE)
    leaves = (*_dead_leaves(cfg), np.ones(DEAD_LEAVES_COUNT), BUILTIN_DEAD_LEAVES_SHARE)
    return _weighted_source([photos, leaves], cfg)


VAL_CROP = 384  # validation targets are centre crops of at most this many pixels a side: a bounded cost


def validation_pairs(cfg: TrainConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, target) pairs the run is validated on, as float (H, W, C) arrays; [] for none.

    --val DIR: paired subfolders (lr/ + hr/, ...) are used as they are; a folder of clean images is
    degraded like the training data, once, with fixed seeds (noise at the middle of the training range,
    without 8-bit rounding: the protocol's input). Without --val, the built-in corpus validates on its
    held-out photo and other data sources on nothing. Targets are centre-cropped to VAL_CROP pixels."""
    scale = cfg.degradation.scale if cfg.degradation.task == "sr" else 1
    if cfg.val is not None:
        if not cfg.val.is_dir():
            raise UserError(f"--val {cfg.val}: no such folder")
        subfolders = paired_subfolders(cfg.val)
        if subfolders is not None:
            pairs, problems = _match_by_stem(*subfolders)
            if problems or not pairs:
                raise UserError(f"--val {cfg.val}: " + ("; ".join(problems) or "no pairs found"))
            return [_centre_pair(_load_pixels(lr, cfg), _load_pixels(hr, cfg))
                    for lr, hr in pairs]
        paths = list_images(cfg.val)
        if not paths:
            raise UserError(f"--val {cfg.val}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
        cleans = [_load_pixels(p, cfg) for p in paths]
    elif cfg.data or cfg.aligned or cfg.clean or cfg.dead_leaves:
        return []
    else:
        cleans = [_load_pixels(corpus.validation_photo_path(), cfg)]
    return [_degraded_for_validation(clean, cfg, scale, seed=12345 + i) for i, clean in enumerate(cleans)]


def _centre(img: np.ndarray, size: int, multiple: int) -> np.ndarray:
    h, w = img.shape[:2]
    ch, cw = min(h, size) // multiple * multiple, min(w, size) // multiple * multiple
    top, left = (h - ch) // 2 // multiple * multiple, (w - cw) // 2 // multiple * multiple
    return img[top:top + ch, left:left + cw]


def _centre_pair(lr: np.ndarray, hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same centre of both (the offsets agree because both are rounded on the input's 8-pixel grid)."""
    scale = max(1, hr.shape[0] // lr.shape[0])
    return _centre(lr, VAL_CROP // scale, 8), _centre(hr, VAL_CROP, 8 * scale)


def _degraded_for_validation(clean: np.ndarray, cfg: TrainConfig, scale: int, *, seed: int):
    clean = _centre(clean, VAL_CROP, 8 * scale)
    deg = cfg.degradation
    rng = np.random.default_rng(seed)
    if deg.task == "denoise" and deg.sigma[1] > 0:
        return gaussian_noise(clean, (deg.sigma[0] + deg.sigma[1]) / 2, rng), clean
    no_rounding = DegradationConfig(**{**deg.__dict__, "quantize_share": 0.0})
    return degrade_pair(clean, no_rounding, rng)


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return img[y:y + size, x:x + size]


def random_crop_pair(lr: np.ndarray, hr: np.ndarray, crop: int, scale: int, rng: np.random.Generator):
    """Crops at the same place: `crop` pixels of the target, crop/scale of the input."""
    lr_crop = crop // scale
    h, w = lr.shape[:2]
    y, x = rng.integers(0, h - lr_crop + 1), rng.integers(0, w - lr_crop + 1)
    return lr[y:y + lr_crop, x:x + lr_crop], hr[y * scale:(y + lr_crop) * scale, x * scale:(x + lr_crop) * scale]


def augment(images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flip and 90-degree rotation (the 8 symmetries of the square) for every image."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = []
    for img in images:
        img = np.rot90(img, k)
        out.append(img[:, ::-1] if flip else img)
    return out


def pad_to_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad an image smaller than the crop (mirroring keeps noise statistics, unlike resizing)."""
    h, w = img.shape[:2]
    if h >= size and w >= size:
        return img
    return np.pad(img, ((0, max(size - h, 0)), (0, max(size - w, 0)), (0, 0)), mode="symmetric")


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))


class TrainingSamples(torch.utils.data.Dataset):
    """Sample i = (input crop, target crop), a deterministic function of (seed, i). Tensors in [0, 1]."""

    def __init__(self, source: PairedSource | ImageSource, cfg: TrainConfig):
        self.source = source
        self.cfg = cfg
        self.crop = cfg.crop
        self.scale = source.scale if isinstance(source, PairedSource) else _degradation_scale(cfg.degradation)
        if self.crop % self.scale:
            raise UserError(f"--crop {self.crop} must be a multiple of the scale {self.scale}")

    def __len__(self) -> int:
        return 2**62  # indexed by the global sample number, see `StepSamples`

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, index])
        k = (self.source.targets if isinstance(self.source, PairedSource) else self.source).draw(rng)
        if isinstance(self.source, PairedSource):
            lr = self._padded(self.source.inputs, k, self.crop // self.scale)
            hr = self._padded(self.source.targets, k, self.crop)
            lr, hr = random_crop_pair(lr, hr, self.crop, self.scale, rng)
            if self.cfg.augment:
                lr, hr = augment([lr, hr], rng)
        else:
            hr = random_crop(self._padded(self.source, k, self.crop), self.crop, rng)
            if self.cfg.augment:
                (hr,) = augment([hr], rng)
            hr = np.ascontiguousarray(hr)
            if hr.shape[2] == 3 and rng.random() < self.cfg.degradation.grey_share:
                # A grey photo as a colour model sees it: three equal channels with equal noise.
                lr, hr = degrade_pair(to_channels(hr, 1), self.cfg.degradation, rng)
                lr, hr = to_channels(lr, 3), to_channels(hr, 3)
            else:
                lr, hr = degrade_pair(hr, self.cfg.degradation, rng)
        return to_tensor(lr), to_tensor(hr)

    def _padded(self, source: ImageSource, k: int, size: int) -> np.ndarray:
        return pad_to_crop(source.get(k), size)  # ImageSource.check warned about these


def _degradation_scale(deg: DegradationConfig) -> int:
    return deg.scale if deg.task == "sr" else 1


def build_source(cfg: TrainConfig) -> PairedSource | ImageSource:
    given = [name for name, value in (("--data", cfg.data), ("--aligned", cfg.aligned), ("--clean", cfg.clean))
             if value]
    if len(given) > 1:
        raise UserError(f"choose one data source, not {' and '.join(given)}")
    cfg = with_value_range(cfg)  # measured here only for callers that did not (train() records it first)
    if cfg.data is not None:
        return paired_source(cfg)
    if cfg.aligned is not None:
        return aligned_source(cfg)
    if cfg.clean or cfg.dead_leaves:
        return clean_source(cfg)
    return builtin_source(cfg)


class StepSamples(torch.utils.data.Sampler):
    """The global sample numbers this process trains on, steps `start_step` + 1 ... `iters`.

    Step s (counted from 0) holds samples s*batch ... s*batch + batch - 1 whatever the number of processes;
    with world_size processes, rank r takes the r-th of world_size contiguous shares of each step. So a
    run resumed with another number of processes, or compared with a single process, sees the same data.
    """

    def __init__(self, start_step: int, iters: int, batch: int, *, rank: int = 0, world_size: int = 1):
        self.start_step, self.iters, self.batch = start_step, iters, batch
        self.share = batch // world_size
        self.offset = rank * self.share

    def __iter__(self):
        for step in range(self.start_step, self.iters):
            first = step * self.batch + self.offset
            yield from range(first, first + self.share)

    def __len__(self) -> int:
        return (self.iters - self.start_step) * self.share
