"""Why the model answered what it did: a Grad-CAM heat map (captum's ``LayerGradCam``) over the image it saw.

Grad-CAM (Selvaraju et al. 2017) weights each channel of the last feature map by the mean gradient of the class
score and keeps the positive sum: where in the image evidence *for* that class was found. The layer is the last
stage timm lists in the model's ``feature_info``, the feature map its classifier pools: ``layer4`` of a ResNet,
``blocks.6`` of an EfficientNet, ``stages.3`` of a ConvNeXt. Models whose last stage is not a 2-D map (vision
transformers' tokens) have no heat map.
"""

from __future__ import annotations

import copy
import logging
import threading

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from matplotlib import colormaps
from PIL import Image

from flowers_hf.serving.classifier import ImageClassifier

logger = logging.getLogger(__name__)

# How much of the heat map's colour covers the image the model saw.
HEAT_ALPHA = 0.45


def cam_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose output Grad-CAM reads: the last feature stage in timm's ``feature_info``.

    Args:
        model: a timm model.
    """
    info = getattr(model, "feature_info", None)
    if not info:
        raise ValueError(f"{type(model).__name__} lists no feature stages (timm's feature_info): no Grad-CAM layer")
    return model.get_submodule(info[-1]["module"])


def grad_cam(model: torch.nn.Module, layer: torch.nn.Module, pixel_values: torch.Tensor, target: int) -> np.ndarray:
    """The Grad-CAM map of class ``target`` at the input's resolution, scaled to [0, 1] (all 0 without evidence).

    Args:
        model: ``pixel_values -> logits`` (a timm model), in eval mode.
        layer: the feature map to read, e.g. :func:`cam_layer`.
        pixel_values: one preprocessed image, shape (1, 3, H, W).
        target: the class id to explain.
    """
    cam = LayerGradCam(model, layer).attribute(pixel_values, target=target, relu_attributions=True)
    if cam.dim() != 4:
        raise ValueError(f"the layer's output has shape {tuple(cam.shape)}, not a 2-D feature map: no Grad-CAM")
    cam = LayerAttribution.interpolate(cam, tuple(pixel_values.shape[-2:]), interpolate_mode="bilinear")
    cam = cam[0, 0].detach().clamp(min=0).cpu().double().numpy()
    peak = cam.max()
    return cam / peak if peak > 0 else cam


def overlay(view: np.ndarray, heat: np.ndarray, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """``view`` (HWC uint8) with ``heat`` (HW, in [0, 1]) blended over it in the ``jet`` colours, as uint8.

    Args:
        view: the image as the model saw it.
        heat: the heat map, same height and width.
        alpha: the heat map's share of each pixel.
    """
    colours = colormaps["jet"](heat)[..., :3]
    blended = (1 - alpha) * view.astype(np.float64) / 255 + alpha * colours
    return (blended * 255).round().clip(0, 255).astype(np.uint8)


class HeatMapper:
    """Grad-CAM heat maps for a :class:`ImageClassifier`'s answers, one request at a time.

    It works on its own copy of the network: captum hooks the layer during each call, and a prediction running in
    another thread through a shared module would trip the hook. The copy's weights need no gradients, so the
    backward pass runs only from the scores back to the feature map.

    Args:
        classifier: the model with its preprocessing.
    """

    def __init__(self, classifier: ImageClassifier) -> None:
        self.classifier = classifier
        self.model = copy.deepcopy(classifier.model.timm_model).eval().requires_grad_(False)
        self.layer = cam_layer(self.model)
        self._lock = threading.Lock()

    def __call__(self, image: Image.Image | torch.Tensor, class_name: str | None = None) -> tuple[str, np.ndarray]:
        """The explained class and the model's view of ``image`` with its heat map over it (HWC uint8).

        Args:
            image: the photo, RGB, or the input ``ImageClassifier.prepare`` gave for it (its first view, the centre
                crop, is explained: nothing is preprocessed again).
            class_name: the class to explain; ``None``: the top class of the single centre crop.
        """
        pixels = self.classifier.preprocess(image)[None] if isinstance(image, Image.Image) else image[:1]
        pixels = pixels.to(self.classifier.device)
        if class_name is None:
            target = int(self.classifier.probabilities(pixels)[0].argmax())
        else:
            target = self.classifier.class_names.index(class_name)
        with self._lock:
            heat = grad_cam(self.model, self.layer, pixels, target)
        return self.classifier.class_names[target], overlay(self.classifier.model_view(pixels), heat)


def heat_mapper(classifier: ImageClassifier) -> HeatMapper | None:
    """A :class:`HeatMapper` for ``classifier`` after one trial on a blank image, or ``None`` with a warning when
    its model cannot have one (no 2-D feature map, as in vision transformers; no PyTorch network to differentiate).

    Args:
        classifier: the model with its preprocessing.
    """
    try:
        mapper = HeatMapper(classifier)
        height, width = classifier.prep.input_size
        mapper(Image.new("RGB", (width, height)))
    except (AttributeError, ValueError) as error:
        logger.warning("No heat maps for this model: %s", error)
        return None
    return mapper
