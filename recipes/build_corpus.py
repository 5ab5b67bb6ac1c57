#!/usr/bin/env python3
"""Build the clean-photograph training corpus from Debian packages.

No standard restoration training set (DIV2K, Flickr2K, ...) can be reached from our machines, so
the corpus comes from the Debian bookworm packages surveyed in shared/training-data.md:

  photos    gcompris-qt-data (WebP inside Qt .rcc files), tuxpaint-data and palapeli-data (JPEG)
  textures  ufoai-textures and nexuiz-textures (photo-based material tiles inside zip .pk3 files)

For each package the script fetches the .deb with `apt-get download`, unpacks it with
`dpkg-deb -x` into a temporary folder, pulls out the images and turns them into clean ground truth:
every source went through lossy coding, so each image loses any black letterbox bars, is
downscaled 1.5-2x with Lanczos (the codec's artefacts and the sensor noise average away) and is
stored as 8-bit RGB PNG. Near-flat images, exact duplicates and, among the textures, game maps,
cut-outs and non-photographic tiles are rejected. OUT/manifest.json records, per file, the
package, the original member, the licence note, the crop and the sizes before and after.

    python recipes/build_corpus.py --out /work/data/corpus [--sources photos,textures]
                                   [--download-dir /work/data/debs]

The images must never be committed, and Debian's desktop wallpaper/background packages are
reserved for evaluation: they are deliberately not among the sources.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

GROUPS = ("photos", "textures")

# After downscaling, anything shorter than this is an icon or sprite, not a training image.
MIN_SIDE = 256
# Images whose shorter side is at least this many pixels are reduced 2x, others by the source's
# smaller factor: big images carry more compression blur, small ones cannot afford to lose more.
LARGE_SIDE = 1024
# Rows or columns at the edge whose brightest pixel is at most this are letterbox bars.
BLACK = 16
# Mean absolute luma step between neighbours (0-255 scale) below which an image is near-flat.
# Low on purpose: legitimate photos with much sky or water (a dolphin in open sea) score ~0.8;
# the training sampler weights crops by gradient energy anyway.
MIN_GRADIENT = 0.6
# Textures only: a tile with more than this share of featureless 16x16 blocks is a cut-out on a
# flat background, a sign or a UV skin padded with black. Photos are exempt: sky and bokeh are flat.
MAX_FLAT_SHARE = 0.25


@dataclass(frozen=True)
class Member:
    """One image found inside a package, opened lazily (Pillow decodes pixels on first use)."""

    name: str  # stable output stem, without the package prefix
    member: str  # where it came from, relative to the package root
    image: Image.Image


@dataclass(frozen=True)
class Source:
    package: str
    group: str
    prefix: str
    licence: str  # from the table in shared/training-data.md
    factor: float  # downscale factor for images shorter than LARGE_SIDE
    members: Callable[[Path], Iterator[Member]]


# --------------------------------------------------------------------------------------------
# Readers: one per package layout
# --------------------------------------------------------------------------------------------

# Only the activities whose pictures are photographs; lang.rcc (clip-art) and the drawings in
# babyshapes/details/solar_system are left out.
GCOMPRIS_RCC = (
    "clickgame",
    "erase",
    "explore_farm_animals",
    "explore_monuments",
    "explore_world_animals",
    "explore_world_music",
)


def rcc_files(data: bytes) -> Iterator[tuple[str, int, bytes]]:
    """Yield (path, flags, payload) for every file in a Qt binary resource (.rcc) file.

    We walk the resource tree rather than scanning for b'RIFF....WEBP' so that each picture keeps
    its real path (needed to trace its licence in debian/copyright). Layout: a 'qres' header with
    the offsets of the tree, data and names sections; tree nodes of 14 bytes (22 from format
    version 2 on, which adds a timestamp); names stored as length, hash, UTF-16BE text.
    """
    magic, version, tree, payloads, names = struct.unpack(">4sIIII", data[:20])
    if magic != b"qres":
        raise ValueError("not a Qt resource file")
    node_size = 22 if version >= 2 else 14

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", data, names + offset)
        start = names + offset + 6  # skip length and hash
        return data[start : start + 2 * length].decode("utf-16-be")

    def walk(node: int, prefix: str) -> Iterator[tuple[str, int, bytes]]:
        base = tree + node * node_size
        name_offset, flags = struct.unpack_from(">IH", data, base)
        path = prefix + name_at(name_offset) if node else ""
        if flags & 0x02:  # directory: child count, index of first child
            count, first = struct.unpack_from(">II", data, base + 6)
            for child in range(first, first + count):
                yield from walk(child, path + "/" if path else "")
        else:  # file: country, language, offset of a size-prefixed payload
            (offset,) = struct.unpack_from(">I", data, base + 10)
            (size,) = struct.unpack_from(">I", data, payloads + offset)
            start = payloads + offset + 4
            yield path, flags, data[start : start + size]

    yield from walk(0, "")


def gcompris_members(root: Path) -> Iterator[Member]:
    """WebP pictures of the photographic GCompris activities."""
    for rcc in GCOMPRIS_RCC:
        rcc_path = root / "usr/share/gcompris-qt/rcc" / f"{rcc}.rcc"
        # flags == 0: stored uncompressed, as Qt does for already-compressed WebP.
        webps = sorted(
            (path, payload)
            for path, flags, payload in rcc_files(rcc_path.read_bytes())
            if flags == 0 and payload[:4] == b"RIFF" and payload[8:12] == b"WEBP"
        )
        # Indices count every WebP in the file, so names do not shift when a filter changes.
        for index, (path, payload) in enumerate(webps):
            yield Member(
                name=f"{rcc}_{index:03d}",
                member=f"{rcc_path.relative_to(root)}:{path}",
                image=Image.open(io.BytesIO(payload)),
            )


def jpeg_folder(folder: str) -> Callable[[Path], Iterator[Member]]:
    """Reader for a package that ships plain JPEG photos in one folder."""

    def members(root: Path) -> Iterator[Member]:
        for path in sorted((root / folder).glob("*.jpg")):
            yield Member(path.stem, str(path.relative_to(root)), Image.open(path))

    return members


# Game material maps (normal, gloss, bump, glow, specular, height, luma) are not photographs.
# Their names either say so or add a suffix to the diffuse texture's name: "_nm", "_norm", "_sm"
# (ufoai's specular maps), "_gm" (glow masks) or a one-letter "_h", "_s", "_g".
MAP_NAME = re.compile(r"normal|gloss|bump|glow|spec|height|luma|(_nm|_norm|_sm|_gm|_[hsg])$")


def pk3_reader(
    pk3: str, keep: re.Pattern[str] | None = None, drop: re.Pattern[str] | None = None
) -> Callable[[Path], Iterator[Member]]:
    """Reader for a game texture archive (a zip); keep/drop filter member paths by regex.

    The filters come from a visual survey of every tile of 512 px or more (contact sheets): they
    name the folders and sets that are painted or rendered rather than photographed.
    """

    def members(root: Path) -> Iterator[Member]:
        with zipfile.ZipFile(root / pk3) as archive:
            for name in sorted(archive.namelist()):
                path = Path(name.lower())
                if path.suffix not in (".jpg", ".png", ".tga") or MAP_NAME.search(path.stem):
                    continue
                if (keep and not keep.search(name)) or (drop and drop.search(name)):
                    continue
                image = Image.open(io.BytesIO(archive.read(name)))
                # Palette tiles are quantised to 256 dithered colours, not clean ground truth;
                # single-channel tiles are gloss, specular or height maps.
                if image.mode not in ("RGB", "RGBA"):
                    continue
                stem = f"{path.parent.name}_{path.stem}"  # stems repeat across folders
                yield Member(re.sub(r"[^a-z0-9_-]+", "-", stem), f"{pk3}:{name}", image)

    return members


SOURCES = (
    Source(
        package="gcompris-qt-data",
        group="photos",
        prefix="gcompris",
        licence="GPL-3+, CC-BY(-SA), public domain (per file in debian/copyright)",
        factor=1.5,
        members=gcompris_members,
    ),
    Source(
        package="tuxpaint-data",
        group="photos",
        prefix="tuxpaint",
        licence="GPL-2+",
        factor=1.5,
        members=jpeg_folder("usr/share/tuxpaint/templates"),
    ),
    Source(
        package="palapeli-data",
        group="photos",
        prefix="palapeli",
        licence="GPL-2+",
        factor=2.0,
        members=jpeg_folder("usr/share/palapeli/collection"),
    ),
    Source(
        package="ufoai-textures",
        group="textures",
        prefix="ufoai",
        licence="GPL-2+/GPL-3+/CC-BY(-SA)/public domain (per file in debian/copyright)",
        factor=1.5,
        members=pk3_reader(
            "usr/share/games/ufoai/base/0textures.pk3",
            # Drop: alien-base sheets and screens, the player base's rendered panels, computer
            # consoles, the sci-fi panels of tex_trak (its trak4_* brick/concrete/plaster tiles are
            # photo-based), the painted hazard-stripe set, road and parking signs, and the
            # rendered "9tech" walls.
            drop=re.compile(
                r"tex_(alienb|base|tech)/|tex_trak/(?!trak4_)|stripe|sign|crossing|/9"
            ),
        ),
    ),
    Source(
        package="nexuiz-textures",
        group="textures",
        prefix="nexuiz",
        licence="GPL-2",
        factor=1.5,
        members=pk3_reader(
            "usr/share/games/nexuiz/data/textures.pk3",
            # Most of this archive is model UV skins, sci-fi panels, skies and screenshots; keep
            # only the folders of photo-based terrain and building materials.
            keep=re.compile(
                r"textures/(terrain_data|terraintex|stormkeep|trak4"
                r"|desertfactory_(metal|stone|wood))/"
            ),
            drop=re.compile(r"warning|lava"),  # painted hazard stripes, procedural lava
        ),
    ),
)


# --------------------------------------------------------------------------------------------
# Packages
# --------------------------------------------------------------------------------------------


def local_deb(package: str, download_dir: Path) -> Path | None:
    debs = sorted(download_dir.glob(f"{package}_*.deb"))
    return debs[-1] if debs else None


def ensure_package_lists(packages: Iterable[str]) -> None:
    """Run `apt-get update` once if apt does not know one of the packages (fresh container)."""
    for package in packages:
        known = subprocess.run(["apt-cache", "show", package], capture_output=True)
        if known.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True)  # failures show up below
            return


def fetch_deb(package: str, download_dir: Path) -> Path:
    """Return the package's .deb in download_dir, fetching it with `apt-get download` if absent."""
    deb = local_deb(package, download_dir)
    if deb is None:
        result = subprocess.run(
            ["apt-get", "download", package], cwd=download_dir, capture_output=True, text=True
        )
        deb = local_deb(package, download_dir)
        if result.returncode != 0 or deb is None:
            raise RuntimeError(result.stderr.strip() or "no .deb appeared")
    return deb


def deb_version(deb: Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()


# --------------------------------------------------------------------------------------------
# Image checks
# --------------------------------------------------------------------------------------------


def target_size(size: tuple[int, int], small_factor: float) -> tuple[tuple[int, int], float]:
    """Size after downscaling, and the factor: 2 for large images, else the source's own."""
    factor = 2.0 if min(size) >= LARGE_SIDE else small_factor
    return (round(size[0] / factor), round(size[1] / factor)), factor


def luma(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float32)


def content_box(image: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box of the picture inside black letterbox bars, if any.

    tuxpaint's mossy_bark has such bars; their hard edges are not content to learn from.
    """
    gray = luma(image)
    rows = np.flatnonzero(gray.max(axis=1) > BLACK)
    cols = np.flatnonzero(gray.max(axis=0) > BLACK)
    if rows.size == 0:  # all black: left whole for the near-flat check to reject
        return 0, 0, image.width, image.height
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def gradient_energy(gray: np.ndarray) -> float:
    """Mean absolute difference between horizontal and vertical neighbours."""
    return float((np.abs(np.diff(gray, axis=1)).mean() + np.abs(np.diff(gray, axis=0)).mean()) / 2)


def flat_share(gray: np.ndarray, block: int = 16) -> float:
    """Share of block x block tiles whose luma standard deviation is below 1.5 grey levels."""
    h, w = (s - s % block for s in gray.shape)
    tiles = gray[:h, :w].reshape(h // block, block, w // block, block)
    return float((tiles.std(axis=(1, 3)) < 1.5).mean())


def looks_like_map(image: Image.Image) -> bool:
    """Backstop for material maps whose names do not give them away.

    A tangent-space normal map averages close to (128, 128, 255). Gloss, specular and height maps
    stored as RGB have no colour at all: real photographs always carry some chroma noise, so a
    mean saturation below 1% means a grey map (or an untextured render).
    """
    rgb = np.asarray(image, dtype=np.float32).reshape(-1, 3)
    if np.abs(rgb.mean(axis=0) - (128, 128, 255)).max() < 40:
        return True
    saturation = np.asarray(image.convert("HSV"), dtype=np.float32)[..., 1] / 255
    return float(saturation.mean()) < 0.01


def rejection(image: Image.Image, group: str) -> str | None:
    """Why a downscaled image should not enter the corpus, or None to keep it."""
    gray = luma(image)
    if gradient_energy(gray) < MIN_GRADIENT:
        return "near-flat"
    if group == "textures":
        if looks_like_map(image):
            return "material map"
        if flat_share(gray) > MAX_FLAT_SHARE:
            return "flat background"
    return None


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------


def build_source(
    source: Source, root: Path, out: Path, seen: set[str], rejected: Counter[str]
) -> list[dict]:
    """Extract, clean and write one package's images; return their manifest entries."""
    entries = []
    for item in source.members(root):
        # 8-bit RGB; dropping alpha is safe: in the kept tiles it holds blend or height data,
        # not transparency, and cut-outs are caught by the flat-background check.
        image = item.image.convert("RGB")
        box = content_box(image)
        image = image.crop(box)
        size, factor = target_size(image.size, source.factor)
        if min(size) < MIN_SIDE:
            rejected["too small"] += 1
            continue
        # Lanczos downscaling averages compression artefacts and sensor noise away.
        image = image.resize(size, Image.LANCZOS)
        reason = rejection(image, source.group)
        digest = hashlib.sha256(repr(image.size).encode() + image.tobytes()).hexdigest()
        if reason is None and digest in seen:
            reason = "duplicate"
        if reason:
            rejected[reason] += 1
            continue
        seen.add(digest)
        file = f"{source.group}/{source.prefix}_{item.name}.png"
        image.save(out / file)
        entries.append(
            {
                "file": file,
                "package": source.package,
                "member": item.member,
                "licence": source.licence,
                "original_size": list(item.image.size),
                "crop_box": list(box),
                "final_size": list(image.size),
                "downscale": factor,
            }
        )
    return entries


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="corpus folder to (re)build")
    parser.add_argument(
        "--sources", default=",".join(GROUPS), help="comma-separated subset of: photos,textures"
    )
    parser.add_argument("--download-dir", type=Path, default=Path("/work/data/debs"))
    args = parser.parse_args()
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = set(args.sources) - set(GROUPS)
    if unknown:
        parser.error(f"unknown sources: {', '.join(sorted(unknown))}")
    return args


def main() -> int:
    args = parse_args()
    start = time.monotonic()
    args.download_dir.mkdir(parents=True, exist_ok=True)
    # The folders are rebuilt from scratch so that they always match the manifest.
    for group in GROUPS:
        (args.out / group).mkdir(parents=True, exist_ok=True)
        for stale in (args.out / group).glob("*.png"):
            stale.unlink()

    sources = [s for s in SOURCES if s.group in args.sources]
    ensure_package_lists(s.package for s in sources if not local_deb(s.package, args.download_dir))
    seen: set[str] = set()  # pixel hashes, shared so duplicates across packages are caught too
    packages, files, failures = {}, [], []
    for source in sources:
        rejected: Counter[str] = Counter()
        try:
            deb = fetch_deb(source.package, args.download_dir)
        except RuntimeError as error:
            failures.append(source.package)
            print(f"{source.package}: download failed, skipped ({error})", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
            entries = build_source(source, Path(tmp), args.out, seen, rejected)
        files += entries
        packages[source.package] = {
            "deb": deb.name,
            "version": deb_version(deb),
            "licence": source.licence,
            "images": len(entries),
        }
        megapixels = sum(w * h for w, h in (e["final_size"] for e in entries)) / 1e6
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(rejected.items()))
        print(f"{source.package:18} {len(entries):4d} images {megapixels:6.1f} MP"
              f"  (rejected: {skipped or 'none'})")

    manifest = {"generator": "recipes/build_corpus.py", "packages": packages, "files": files}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    for group in args.sources:
        count = sum(e["file"].startswith(group + "/") for e in files)
        print(f"{group:18} {count:4d} images")
    total = sum(w * h for w, h in (e["final_size"] for e in files)) / 1e6
    print(f"{'total':18} {len(files):4d} images {total:6.1f} MP"
          f" in {time.monotonic() - start:.0f} s -> {args.out}")
    if failures:
        print(f"failed packages: {', '.join(failures)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
