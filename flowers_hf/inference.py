"""A saved classifier ready for single photos: loaded once, with the eval preprocessing it was trained with."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageClassification, TimmWrapperForImageClassification

from flowers_hf.data.preprocessing import Preprocessing, resolve_preprocessing
from flowers_hf.data.transforms import build_eval_transform, denormalize
from flowers_hf.data.tta import TTATransform
from flowers_hf.errors import MissingFileError, OfflineError
from flowers_hf.hub import is_hub_id, probe_hub
from flowers_hf.images import open_image

logger = logging.getLogger(__name__)


class FlowerClassifier:
    """A model folder or Hub repo written by ``train.py``, with the preprocessing recorded in its config.

    Args:
        model: the classifier, in eval mode.
        prep: its input contract.
        device: where inference runs.
        tta: test-time augmentation views for :meth:`predict` (``flip``, ``five_crop``, ``ten_crop``; see
            ``flowers_hf.data.tta``), their probabilities averaged; ``None``: the single centre crop.
    """

    def __init__(
        self,
        model: TimmWrapperForImageClassification,
        prep: Preprocessing,
        device: str = "cpu",
        tta: str | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.prep = prep
        self.device = torch.device(device)
        self.class_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        # Chosen on validation and stored in config.json by train.py (evaluation.calibration); None without one.
        self.unsure_threshold = (getattr(model.config, "calibration", None) or {}).get("unsure_threshold")
        self._transform = build_eval_transform(prep)
        self._views = TTATransform(prep, tta) if tta else None

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, device: str = "cpu", revision: str | None = None, tta: str | None = None
    ):
        """Load a run folder or a Hub repo id (safetensors weights only; no remote code).

        Args:
            name_or_path: a folder with ``config.json`` and ``model.safetensors``, or ``owner/name`` on the Hub.
            device: ``cpu``, ``cuda``, ...
            revision: the Hub branch, tag or commit.
            tta: test-time augmentation views for :meth:`predict`, or ``None``.
        """
        source = str(name_or_path)
        if not is_hub_id(source) and not (Path(source).expanduser() / "config.json").is_file():
            raise MissingFileError(f"{source}: neither a model folder with config.json nor a Hub repo id (owner/name)")
        if is_hub_id(source) and (error := probe_hub(source, revision=revision)) is not None:
            raise OfflineError(
                f"Cannot reach the model {source} on the Hugging Face Hub ({type(error).__name__}); "
                "give a local run folder, or set HF_HUB_OFFLINE=1 to use a cached copy"
            ) from error
        try:
            model = AutoModelForImageClassification.from_pretrained(
                source, revision=revision, use_safetensors=True, trust_remote_code=False
            )
        except OSError as error:  # offline and not cached, or a repository without safetensors weights
            raise OfflineError(f"Cannot load {source}: {str(error).splitlines()[0]}") from error
        prep = resolve_preprocessing(model.config.pretrained_cfg)  # the wrapper does not pass it on to timm
        logger.info("Loaded %s: %d classes, %s", source, model.config.num_labels, prep)
        return cls(model, prep, device, tta)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The normalised CHW tensor the model sees."""
        return self._transform(image)

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities for a batch of preprocessed images, shape ``(N, num_classes)``."""
        logits = self.model(batch.to(self.device)).logits
        return logits.float().softmax(-1).cpu()

    def predict(self, image: Image.Image | str | Path, top_k: int = 5) -> dict[str, float]:
        """The ``top_k`` most likely flower names with their probabilities, most likely first.

        Args:
            image: a PIL image, or a path opened with :func:`flowers_hf.images.open_image`.
            top_k: how many classes to return.
        """
        image = image if isinstance(image, Image.Image) else open_image(image)
        if self._views is None:
            probabilities = self.probabilities(self.preprocess(image)[None])[0]
        else:  # each view's calibrated probabilities, averaged (as flowers_hf.evaluate --tta does)
            probabilities = self.probabilities(self._views(image)).mean(0)
        scores, indices = probabilities.topk(min(top_k, len(self.class_names)))
        return {self.class_names[i]: float(s) for s, i in zip(scores.tolist(), indices.tolist(), strict=True)}

    def is_unsure(self, prediction: dict[str, float] | float) -> bool:
        """Whether a prediction's top-1 probability lies below the stored ``unsure_threshold``: "not a flower I
        know" rather than a name. Always ``False`` for a model without a threshold.

        Args:
            prediction: a :meth:`predict` result, or its top-1 probability.
        """
        top = max(prediction.values()) if isinstance(prediction, dict) else float(prediction)
        return self.unsure_threshold is not None and top < self.unsure_threshold

    def model_view(self, image: Image.Image) -> np.ndarray:
        """The preprocessed image as a displayable HWC uint8 array: what the model was shown."""
        pixels = denormalize(self.preprocess(image), self.prep.mean, self.prep.std)
        return (pixels * 255).round().astype(np.uint8)
