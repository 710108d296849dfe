"""The model's input for one photo as the server makes it: timm's eval resize and centre crop (``eval_steps``), then
the pixels normalised with NumPy on the calling thread, equal bit for bit to the eval transform's tensor.

Why not torchvision's ``ToTensor`` and ``Normalize``, as ``build_eval_transform`` ends: on a 224-px crop each of their
six tensor operations is split over torch's intra-op threads, which on a few cores wait for ONNX Runtime's threads (or
anything else running) to give them a core; on the 2-core VM under load that cost the click tens of milliseconds
(docs/serving.md, "Large photos and where the milliseconds go"). The same float32 operations in the same order, in
NumPy on one thread, give the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from flowers_hf.data.images import to_rgb
from flowers_hf.data.preprocessing import Preprocessing
from flowers_hf.data.transforms import eval_steps


class PhotoInput:
    """``image -> (3, H, W)`` float32 tensor: ``build_eval_transform(prep)``'s result, made on the calling thread.

    Args:
        prep: the model's input contract.
    """

    def __init__(self, prep: Preprocessing) -> None:
        steps = eval_steps(prep)
        self.resize, self.crop = steps.resize, steps.crop
        self.mean = np.asarray(prep.mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(prep.std, dtype=np.float32).reshape(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(self.normalize(np.asarray(self.crop(self.resize(to_rgb(image))))))

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """HWC uint8 pixels as the model's CHW float32 input: ``/ 255``, ``- mean``, ``/ std`` in float32, as
        torchvision's ``to_tensor`` and ``normalize`` compute them.

        Args:
            pixels: an RGB image as an ``(H, W, 3)`` uint8 array.
        """
        out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
        np.divide(pixels.transpose(2, 0, 1), np.float32(255), out=out)
        np.subtract(out, self.mean, out=out)
        return np.divide(out, self.std, out=out)
