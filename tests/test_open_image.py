"""Opening photos as people send them: orientation, modes, animations, huge and hostile files."""

import io

import numpy as np
import pytest
from PIL import Image

from bench.fuzz_inputs import png_claiming
from flowers_hf.core.errors import UnreadableImageError
from flowers_hf.data.images import MAX_SIDE, open_image

RED, BLUE = (220, 20, 20), (20, 20, 220)


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_exif_orientation_is_applied(tmp_path):
    # A landscape image stored sideways, with the tag that says "rotate 90° clockwise to view" (6).
    stored = Image.new("RGB", (40, 20), RED)
    stored.paste(BLUE, (0, 0, 20, 20))  # the left half of the stored pixels is blue
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(stored, tmp_path / "phone.jpg", exif=exif, quality=95)
    image = open_image(path)
    assert image.size == (20, 40)  # shown upright: portrait
    top = np.asarray(image)[5, 10]
    assert top[2] > 150 and top[0] < 100  # the stored left half is at the top after the rotation


@pytest.mark.parametrize(
    ("mode", "colour"), [("L", 128), ("RGBA", (10, 200, 30, 255)), ("CMYK", (0, 255, 255, 0)), ("P", 3)]
)
def test_any_mode_becomes_rgb(tmp_path, mode, colour):
    suffix = "jpg" if mode in ("L", "CMYK") else "png"
    path = _save(Image.new(mode, (30, 20), colour), tmp_path / f"image.{suffix}")
    image = open_image(path)
    assert (image.mode, image.size) == ("RGB", (30, 20))


def test_cmyk_colours_survive(tmp_path):
    path = _save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=100)
    red, green, blue = np.asarray(open_image(path)).reshape(-1, 3).mean(0)
    assert red > 200 and green < 60 and blue < 60  # no cyan or magenta cast left: red


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, BLUE, BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    pixels = np.asarray(open_image(path))
    assert pixels[..., 0].mean() > 150 and pixels[..., 2].mean() < 100


def test_large_photos_are_shrunk_to_max_side_keeping_the_aspect(tmp_path):
    path = _save(Image.new("RGB", (4000, 3000), RED), tmp_path / "big.jpg")
    image = open_image(path)
    assert image.size == (MAX_SIDE, 768)
    assert open_image(path, max_side=500).size == (500, 375)


def test_small_photos_keep_their_size(tmp_path):
    assert open_image(_save(Image.new("RGB", (1, 1), RED), tmp_path / "dot.png")).size == (1, 1)


def test_file_objects_work_too():
    buffer = io.BytesIO()
    Image.new("RGB", (12, 9), RED).save(buffer, format="PNG")
    buffer.seek(0)
    assert open_image(buffer).size == (12, 9)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an image"),
        (b"hello, this is text", "not an image"),
        (np.random.default_rng(0).bytes(5000), "not an image"),
        (png_claiming(30_000, 30_000), "too large to open safely"),  # PIL's hard limit: an error on open
        (png_claiming(10_000, 10_000), "too large to open safely"),  # PIL only warns here: refused all the same
    ],
)
def test_unusable_files_get_a_message_and_no_path(tmp_path, content, message):
    path = tmp_path / "upload.jpg"
    path.write_bytes(content)
    with pytest.raises(UnreadableImageError, match=message) as caught:
        open_image(path)
    assert str(tmp_path) not in str(caught.value)


def test_truncated_jpeg_is_refused(tmp_path):
    full = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full, quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[:2000])
    with pytest.raises(UnreadableImageError, match="truncated"):
        open_image(cut)
