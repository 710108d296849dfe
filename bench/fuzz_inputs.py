"""Hostile images, seeded: real files of every format a person may upload, then broken in the ways decoders are
fuzzed (bit flips, truncation at every section, one format's header on another's body, huge declared dimensions,
empty and 1×1 files, extreme aspect ratios, non-image bytes with an image extension).

``fuzz_inputs(n, seed)`` gives ``n`` named files: the structural cases first, the same list for every seed, then
seeded random mutations. ``tally`` runs each through a function and counts the outcomes. bench/fuzz.py sends them
through the classifier, the demo and a training folder; tests/test_fuzz.py does so on fewer. ``png_claiming`` and
``black_png`` are the PNG bombs, which the tests of ``open_image`` and of the demo's hostile uploads send too.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image

# name: (suffix, how it is written)
PHOTO_SIZE = (48, 40)


def _photo(size: tuple[int, int] = PHOTO_SIZE, seed: int = 0) -> Image.Image:
    """A photo-like picture: smooth gradients under noise, so that each codec has real work to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: size[1], : size[0]]
    base = np.stack([x * 255 / size[0], y * 255 / size[1], (x + y) * 127 / sum(size)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))


def _save(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _heic(image: Image.Image) -> bytes:
    import pillow_heif  # a test-only encoder (see helpers.save_phone_photo)

    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=80)
    return buffer.getvalue()


def _exif_rotated(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    return _save(image, "JPEG", exif=exif.tobytes())


def _animated(image: Image.Image, fmt: str) -> bytes:
    frames = [image, image.rotate(90), image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _palette_with_transparency(image: Image.Image) -> bytes:
    palette = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _save(palette, "PNG", transparency=0)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header and a tiny IDAT: what a decompression bomb looks like before decoding."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def black_png(width: int, height: int) -> bytes:
    """A complete black 1-bit PNG, every row present: a few dozen KB on disk for any size."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row, packer = b"\0" * (1 + (width + 7) // 8), zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def seed_files() -> dict[str, bytes]:
    """One real file of each format and odd mode: name (with its suffix) to content."""
    photo = _photo()
    return {
        "photo.jpg": _save(photo, "JPEG", quality=90),
        "photo.png": _save(photo, "PNG"),
        "photo.webp": _save(photo, "WEBP", quality=80),
        "photo.gif": _save(photo, "GIF"),
        "photo.tif": _save(photo, "TIFF", compression="tiff_lzw"),
        "photo.heic": _heic(photo),
        "photo.avif": _save(photo, "AVIF", quality=80),
        "photo.bmp": _save(photo, "BMP"),
        "sixteen_bit.png": _save(Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257), "PNG"),
        "cmyk.jpg": _save(photo.convert("CMYK"), "JPEG"),
        "palette_transparent.png": _palette_with_transparency(photo),
        "exif_rotated.jpg": _exif_rotated(photo),
        "animated.gif": _animated(photo, "GIF"),
        "animated.webp": _animated(photo, "WEBP"),
    }


def _sections(content: bytes) -> list[int]:
    """Offsets where a section of the file starts: JPEG markers, PNG/WebP chunks, else a few fractions."""
    if content[:2] == b"\xff\xd8":
        return [i for i in range(2, len(content) - 1) if content[i] == 0xFF and content[i + 1] not in (0, 0xFF)]
    if content[:8] == b"\x89PNG\r\n\x1a\n":
        offsets, i = [], 8
        while i + 8 <= len(content):
            offsets.append(i)
            i += 12 + struct.unpack(">I", content[i : i + 4])[0]
        return offsets
    return [len(content) * k // 8 for k in range(1, 8)]


def _structural(seeds: dict[str, bytes]) -> Iterator[tuple[str, bytes]]:
    """The cases every run has: truncations at each section, swapped headers, bombs, empty, tiny, odd shapes."""
    for name, content in seeds.items():
        yield f"intact_{name}", content
        for offset in _sections(content):
            yield f"cut_at_{offset}_{name}", content[:offset]
            yield f"cut_inside_{offset}_{name}", content[: offset + 3]
    names = list(seeds)
    for head, body in zip(names, names[1:] + names[:1], strict=True):
        yield f"head_of_{head}_on_{body}", seeds[head][:32] + seeds[body][32:]
    yield "bomb_30000x30000.png", png_claiming(30_000, 30_000)
    yield "bomb_65535x65535.png", png_claiming(65_535, 65_535)
    yield "black_20000x20000.png", black_png(20_000, 20_000)
    yield "bomb_65500x65500.jpg", _jpeg_claiming(seeds["photo.jpg"], 65_500, 65_500)
    yield "bomb_60000x60000.gif", seeds["photo.gif"][:6] + struct.pack("<HH", 60_000, 60_000) + seeds["photo.gif"][10:]
    yield "bomb_50000x50000.bmp", _bmp_claiming(seeds["photo.bmp"], 50_000, 50_000)
    for suffix in ("jpg", "png", "webp", "heic", "avif", "gif"):
        yield f"empty.{suffix}", b""
    for fmt, suffix in (("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp")):
        yield f"one_pixel.{suffix}", _save(Image.new("RGB", (1, 1), (200, 30, 90)), fmt)
    for width, height in ((1, 4000), (4000, 1), (2, 3000), (10_000, 3)):
        yield f"aspect_{width}x{height}.png", _save(_photo((width, height)), "PNG")
    yield "text.jpg", b"not an image at all\n"
    yield "html.png", b"<!doctype html><html><body>hello</body></html>"
    yield "zip.webp", b"PK\x03\x04" + bytes(200)
    yield "pdf.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n"
    yield "json.heic", b'{"image": "nope"}'
    yield "noise.avif", np.random.default_rng(7).bytes(4096)


def _jpeg_claiming(content: bytes, width: int, height: int) -> bytes:
    """``content`` with its frame header (SOF0) declaring another size."""
    sof = content.index(b"\xff\xc0")
    return content[: sof + 5] + struct.pack(">HH", height, width) + content[sof + 9 :]


def _bmp_claiming(content: bytes, width: int, height: int) -> bytes:
    return content[:18] + struct.pack("<ii", width, height) + content[26:]


def _mutated(rng: np.random.Generator, name: str, content: bytes) -> tuple[str, bytes]:
    """One random mutation of a seed file: flipped bits, a cut, a spliced or repeated stretch, or zeroed bytes."""
    data = bytearray(content)
    kind = rng.choice(["flip", "flips", "cut", "splice", "zero"])
    if kind in ("flip", "flips"):
        for at in rng.integers(0, len(data), 1 if kind == "flip" else int(rng.integers(2, 64))):
            data[at] ^= 1 << int(rng.integers(0, 8))
    elif kind == "cut":
        data = data[: int(rng.integers(0, len(data)))]
    elif kind == "splice":
        start, length = int(rng.integers(0, len(data))), int(rng.integers(1, 512))
        at = int(rng.integers(0, len(data)))
        data[at:at] = data[start : start + length]
    else:
        start = int(rng.integers(0, len(data)))
        data[start : start + int(rng.integers(1, 256))] = bytes(min(len(data) - start, 256))
    return f"{kind}_{name}", bytes(data)


def fuzz_inputs(n: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``n`` hostile files, ``(name with suffix, content)``: the structural cases (as many as fit), then seeded random
    mutations of the seed files. Names are unique (a running number in front)."""
    seeds = seed_files()
    cases = list(_structural(seeds))[:n]
    rng = np.random.default_rng(seed)
    names = list(seeds)
    while len(cases) < n:
        name = names[int(rng.integers(0, len(names)))]
        cases.append(_mutated(rng, name, seeds[name]))
    return [(f"{i:04d}_{name}", content) for i, (name, content) in enumerate(cases)]


OUTCOMES = ("tried", "answered", "refused", "crashed", "hung")


def tally(
    inputs: list[tuple[str, bytes]], attempt: Callable[[str, bytes], str], limit_s: float
) -> tuple[Counter, dict[str, str]]:
    """Run ``attempt(name, content)`` on each input; it returns ``"answered"`` or ``"refused"``, or raises (a crash).
    One that took longer than ``limit_s`` counts as hung. The counts, and what crashed or hung with why.
    """
    counts, faults = Counter(tried=len(inputs)), {}
    for name, content in inputs:
        start = time.monotonic()
        try:
            outcome = attempt(name, content)
        except Exception as error:  # a crash is what is counted
            outcome, faults[name] = "crashed", f"{type(error).__name__}: {error}"
        if time.monotonic() - start > limit_s:
            outcome, faults[name] = "hung", f"took {time.monotonic() - start:.1f} s"
        counts[outcome] += 1
    return counts, faults


def table(counts: Counter) -> str:
    """The counts as a one-row Markdown table."""
    return (
        "| "
        + " | ".join(OUTCOMES)
        + " |\n|"
        + " --- |" * len(OUTCOMES)
        + "\n| "
        + " | ".join(str(counts[k]) for k in OUTCOMES)
        + " |"
    )
