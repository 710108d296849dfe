"""What the server gives the model: the eval transform's tensor bit for bit, and for a phone's 12-MP photo, decoded
at reduced scale, the answer of its full decode."""

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.images import to_rgb
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import build_eval_transform
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.inputs import PhotoInput

PREPS = {
    "resnet18 224 px, bicubic, ImageNet's mean and std": resolve_preprocessing(
        "resnet18", TransformArguments(image_size=224)
    ),
    "test_resnet 32 px, bilinear, 0.5": resolve_preprocessing("test_resnet", TransformArguments(image_size=32)),
}


def _image(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    return Image.fromarray(pixels, "RGBA").convert(mode)


@pytest.mark.parametrize("prep", PREPS.values(), ids=PREPS.keys())
@pytest.mark.parametrize(
    ("size", "mode"), [((500, 375), "RGB"), ((375, 500), "RGB"), ((667, 500), "RGBA"), ((31, 47), "L"), ((40, 40), "P")]
)
def test_the_served_input_is_the_eval_transforms_tensor_bit_for_bit(prep, size, mode):
    image = _image(size, mode, seed=sum(size))
    served = PhotoInput(prep)(image)
    assert served.dtype == torch.float32 and served.shape == (3, *prep.input_size)
    assert torch.equal(served, build_eval_transform(prep)(image))


def test_the_classifier_opens_a_file_for_its_own_resize(untrained_folder):
    classifier = ImageClassifier.from_pretrained(untrained_folder)  # 32 px: resized to floor(32 / 0.95) = 33
    assert classifier.resize_side == 33
    buffer = io.BytesIO()
    Image.new("RGB", (1200, 900), (200, 30, 30)).save(buffer, "JPEG")
    # JPEG DCT scaling to 1/8 (150 x 112.5 is not whole: 1/4, 300 x 225), then reduce(3): 100 x 75, >= 2 x 33.
    assert classifier.open(buffer).size == (100, 75)


@pytest.mark.slow  # a 12-MP photo made and decoded in full: seconds
def test_a_phone_photo_gets_the_answer_of_its_full_decode(tiny_run, tmp_path):
    from bench.photos import phone_jpeg

    classifier = ImageClassifier.from_pretrained(tiny_run)
    path = tmp_path / "phone.jpg"
    path.write_bytes(phone_jpeg(4000))
    with Image.open(path) as full:
        reference = to_rgb(ImageOps.exif_transpose(full))
    served, exact = classifier.predict(path, top_k=6), classifier.predict(reference, top_k=6)
    assert next(iter(served)) == next(iter(exact))
    # Measured 2026-12-05 on the tiny run (32 px; the photo decoded at 1/8 and reduced by 5 to 75 x 100): 0.0004 here,
    # at most 0.0016 over six such photos (phone_jpeg seeds 0-5), each with the same top-1.
    assert max(abs(served[name] - exact[name]) for name in exact) <= 0.01
