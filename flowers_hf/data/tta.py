"""Test-time augmentation: several views of each image (crops of the eval-resized image, mirrored), averaged.

The views come from timm's own eval pipeline for the model's data config: its resize (the shorter side to
``input_size / crop_pct``), then torchvision's ``FiveCrop``/``TenCrop`` at the input size instead of the single
centre crop, then timm's normalisation. The centre view is therefore the plain eval input.
"""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from PIL import Image

from flowers_hf.data.images import to_rgb
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import eval_steps

# Name -> number of views. "flip": the centre crop and its mirror image; "five_crop": centre and four corners;
# "ten_crop": those five and their mirror images.
TTA_VIEWS = {"flip": 2, "five_crop": 5, "ten_crop": 10}


class TTATransform:
    """``image -> (views, 3, H, W)`` tensor: the crops of the eval-resized image, the centre crop first.

    Args:
        prep: the model's input contract.
        views: ``flip``, ``five_crop`` or ``ten_crop`` (see ``TTA_VIEWS``).
    """

    def __init__(self, prep: Preprocessing, views: str = "ten_crop") -> None:
        if views not in TTA_VIEWS:
            raise ValueError(f"unknown TTA views {views!r}; use one of {sorted(TTA_VIEWS)}")
        steps = eval_steps(prep)
        self.views = views
        self.size = prep.input_size
        self.resize = steps.resize
        self.to_tensor = steps.to_float

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = self.resize(to_rgb(image))
        return torch.stack([self.to_tensor(view) for view in self.crops(image)])

    def crops(self, image: Image.Image) -> list[Image.Image]:
        """The views of an already resized image, centre crop first."""
        if self.views == "flip":
            centre = TF.center_crop(image, list(self.size))
            return [centre, TF.hflip(centre)]
        *corners, centre = TF.five_crop(image, list(self.size))
        crops = [centre, *corners]
        return crops + [TF.hflip(crop) for crop in crops] if self.views == "ten_crop" else crops


def average_probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The mean over views of each view's softmax probabilities: ``(N, views, classes) -> (N, classes)``.

    Probabilities are averaged rather than logits so that each view's calibrated probability counts as such; with a
    temperature, each view's logits are divided by it first.

    Args:
        logits: class scores of every view of every image.
        temperature: the calibration temperature (1: the logits as they are).
    """
    if logits.ndim != 3:
        raise ValueError(f"expected logits of shape (images, views, classes), got {tuple(logits.shape)}")
    return (logits.float() / temperature).softmax(-1).mean(1)
