"""Test-time augmentation: the views (shape, centre first, mirror images) and the averaging."""

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.preprocessing import resolve_preprocessing
from flowers_hf.data.transforms import build_eval_transform, eval_steps
from flowers_hf.data.tta import TTA_VIEWS, TTATransform, average_probabilities

PREP = resolve_preprocessing("test_resnet", TransformArguments(image_size=32, crop_pct=0.8))


def _image(width: int = 53, height: int = 41) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("views", sorted(TTA_VIEWS))
def test_views_have_the_input_shape_and_the_first_is_the_plain_eval_input(views):
    image = _image()
    stack = TTATransform(PREP, views)(image)
    assert stack.shape == (TTA_VIEWS[views], 3, 32, 32) and stack.dtype == torch.float32
    assert torch.allclose(stack[0], build_eval_transform(PREP)(image), atol=1e-5)
    assert len({view.numpy().tobytes() for view in stack}) == TTA_VIEWS[views]  # all different


def test_mirrored_views_are_mirror_images_of_the_crops():
    stack = TTATransform(PREP, "ten_crop")(_image())
    assert torch.equal(stack[5:], TF.hflip(stack[:5]))
    flip = TTATransform(PREP, "flip")(_image())
    assert torch.equal(flip[1], TF.hflip(flip[0]))


def test_corner_views_are_the_corners_of_the_resized_image():
    resized = eval_steps(PREP).resize(_image())
    assert min(resized.size) == 40  # 32 / 0.8
    crops = TTATransform(PREP, "five_crop").crops(resized)
    assert np.array_equal(np.asarray(crops[1]), np.asarray(resized)[:32, :32])  # top left
    assert np.array_equal(np.asarray(crops[4]), np.asarray(resized)[-32:, -32:])  # bottom right


def test_averaging_identical_views_gives_the_plain_prediction():
    logits = torch.randn(4, 7)
    views = logits[:, None].expand(4, 10, 7)
    assert torch.allclose(average_probabilities(views), logits.softmax(-1), atol=1e-6)
    assert torch.allclose(average_probabilities(views, temperature=2.0), (logits / 2).softmax(-1), atol=1e-6)


def test_averaging_is_the_mean_of_the_views_probabilities():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])  # one image, two views
    first = torch.tensor([2.0, 0.0]).softmax(-1)
    expected = (first + torch.tensor([0.5, 0.5])) / 2
    assert torch.allclose(average_probabilities(logits), expected[None])
    with pytest.raises(ValueError, match="images, views, classes"):
        average_probabilities(torch.zeros(2, 3))


def test_unknown_views_are_refused():
    with pytest.raises(ValueError, match="unknown TTA views"):
        TTATransform(PREP, "twenty_crop")
