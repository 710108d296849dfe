import numpy as np
import pytest
from PIL import Image

from flowers_hf.data.images import to_rgb


def _rgb(image: Image.Image) -> np.ndarray:
    out = to_rgb(image)
    assert out.mode == "RGB"
    assert out.size == image.size
    return np.asarray(out)


def test_rgb_is_returned_unchanged():
    image = Image.new("RGB", (4, 3), (1, 2, 3))
    assert to_rgb(image) is image


def test_grayscale_and_bilevel_are_replicated_to_three_channels():
    assert (_rgb(Image.new("L", (4, 4), 77)) == 77).all()
    assert (_rgb(Image.new("1", (4, 4), 1)) == 255).all()


def test_transparent_pixels_become_white_and_opaque_ones_keep_their_colour():
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    out = _rgb(rgba)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [10, 20, 30]
    la = Image.new("LA", (1, 1), (0, 0))
    assert _rgb(la)[0, 0].tolist() == [255, 255, 255]


def test_palette_with_transparency_is_composited():
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    out = _rgb(palette)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [200, 100, 50]


def test_cmyk_is_converted():
    out = _rgb(Image.new("CMYK", (2, 2), (0, 255, 255, 0)))  # pure red in CMYK
    assert out[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_sixteen_bit_values_are_scaled_not_clipped(mode):
    array = np.array([[0, 32768, 65535]], dtype=np.uint16 if mode == "I;16" else np.int32)
    image = Image.frombytes("I;16", (3, 1), array.tobytes()) if mode == "I;16" else Image.fromarray(array)
    assert image.mode == mode
    out = _rgb(image)
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_float_images_in_unit_range_are_scaled():
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert image.mode == "F"
    assert _rgb(image)[0, :, 0].tolist() == [0, 127, 255]
