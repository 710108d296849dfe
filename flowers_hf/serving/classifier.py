"""A saved classifier for photos, alone or in batches: loaded once, with the eval preprocessing it was trained with."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageClassification, TimmWrapperForImageClassification

from flowers_hf.core.errors import ArgumentError, MissingFileError, OfflineError
from flowers_hf.core.hub import is_hub_id, probe_hub
from flowers_hf.data.identity import DatasetIdentity
from flowers_hf.data.images import open_image
from flowers_hf.data.preprocessing import Preprocessing, resolve_preprocessing
from flowers_hf.data.transforms import denormalize
from flowers_hf.data.tta import TTATransform
from flowers_hf.serving.inputs import PhotoInput
from flowers_hf.serving.onnx_backend import BACKENDS, OnnxModel, load_onnx_model
from flowers_hf.serving.open_set import OpenSetRule, known_score

logger = logging.getLogger(__name__)


class ImageClassifier:
    """A model folder or Hub repo written by ``train.py``, with the preprocessing recorded in its config.

    Args:
        model: the classifier, in eval mode: the PyTorch model, or its ONNX export served by ONNX Runtime (which
            takes the same input and gives the same ``.logits``).
        prep: its input contract; the same eval pipeline feeds either backend.
        device: where inference runs.
        tta: test-time augmentation views for :meth:`predict` (``flip``, ``five_crop``, ``ten_crop``; see
            ``flowers_hf.data.tta``), their probabilities averaged; ``None``: the single centre crop.
    """

    def __init__(
        self,
        model: TimmWrapperForImageClassification | OnnxModel,
        prep: Preprocessing,
        device: str = "cpu",
        tta: str | None = None,
    ) -> None:
        self.model = model.to(device).eval() if isinstance(model, torch.nn.Module) else model
        self.prep = prep
        self.device = torch.device(device)
        self.class_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        # Chosen on validation and stored in config.json by train.py (evaluation.calibration); None without one.
        self.unsure_threshold = (getattr(model.config, "calibration", None) or {}).get("unsure_threshold")
        # The rule python -m flowers_hf.evaluate --ood recommends (config.json["ood"]); None: the threshold above.
        self.open_set_rule = OpenSetRule.from_config(model.config)
        # What it was trained on (flowers_hf.data.identity), for the words a person reads; None for older folders.
        self.dataset = DatasetIdentity.from_dict(getattr(model.config, "dataset", None))
        self._transform = PhotoInput(prep)  # build_eval_transform's tensor, bit for bit, on this thread
        self._views = TTATransform(prep, tta) if tta else None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        device: str = "cpu",
        revision: str | None = None,
        tta: str | None = None,
        backend: str = "pytorch",
    ):
        """Load a run folder or a Hub repo id (safetensors weights only; no remote code).

        Args:
            name_or_path: a folder with ``config.json`` and ``model.safetensors``, or ``owner/name`` on the Hub.
            device: ``cpu``, ``cuda``, ...
            revision: the Hub branch, tag or commit.
            tta: test-time augmentation views for :meth:`predict`, or ``None``.
            backend: ``pytorch`` (``model.safetensors``), or ``onnx`` / ``onnx-int8`` (``onnx/model.onnx`` /
                ``onnx/model_int8.onnx``, written by ``python -m flowers_hf.export``; CPU only).
        """
        source = str(name_or_path)
        if backend not in BACKENDS:
            raise ArgumentError(f"backend {backend!r} is not one of {list(BACKENDS)}")
        if backend != "pytorch" and device != "cpu":
            raise ArgumentError(
                f"the {backend} backend runs on the CPU (onnxruntime's CPU build); use pytorch on {device}"
            )
        if not is_hub_id(source) and not (Path(source).expanduser() / "config.json").is_file():
            raise MissingFileError(f"{source}: neither a model folder with config.json nor a Hub repo id (owner/name)")
        if is_hub_id(source) and (error := probe_hub(source, revision=revision)) is not None:
            raise OfflineError(
                f"Cannot reach the model {source} on the Hugging Face Hub ({type(error).__name__}); "
                "give a local run folder, or set HF_HUB_OFFLINE=1 to use a cached copy"
            ) from error
        try:
            model = (
                AutoModelForImageClassification.from_pretrained(
                    source, revision=revision, use_safetensors=True, trust_remote_code=False
                )
                if backend == "pytorch"
                else load_onnx_model(source, backend, revision)
            )
        except MissingFileError:  # a FileNotFoundError too, but one that names the command to run
            raise
        except OSError as error:  # offline and not cached, or a repository without safetensors weights
            raise OfflineError(f"Cannot load {source}: {str(error).splitlines()[0]}") from error
        prep = resolve_preprocessing(model.config.pretrained_cfg)  # the wrapper does not pass it on to timm
        logger.info("Loaded %s: %d classes, %s", source, model.config.num_labels, prep)
        return cls(model, prep, device, tta)

    @property
    def resize_side(self) -> int:
        """The side the eval pipeline resizes a photo to (the shorter side; the longer of the two with ``squash``)."""
        return max(self.prep.scale_size)

    def open(self, source: str | Path | BinaryIO) -> Image.Image:
        """A photo file as this model needs it: :func:`flowers_hf.data.images.open_image` with ``resize_to`` its
        :attr:`resize_side`, decoded at reduced scale and box-reduced only down to twice that, so that the eval
        pipeline's resize is the one resampling (docs/serving.md, "Large photos and where the milliseconds go").

        Args:
            source: a path or a binary file object.
        """
        return open_image(source, resize_to=self.resize_side)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The normalised CHW tensor the model sees."""
        return self._transform(image)

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """The input :meth:`predict_and_score_prepared` takes for one image, from one pass of the eval pipeline:
        shape ``(1, 3, H, W)``, or with TTA ``(views, 3, H, W)``; the first view is always the centre crop,
        which :meth:`model_view` shows and Grad-CAM explains."""
        return self.preprocess(image)[None] if self._views is None else self._views(image)

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Class scores (temperature-scaled where the model is calibrated) for a batch of preprocessed images."""
        return self.model(batch.to(self.device)).logits.float().cpu()

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities for a batch of preprocessed images, shape ``(N, num_classes)``."""
        return self.logits(batch).softmax(-1)

    def predict(self, image: Image.Image | str | Path, top_k: int = 5) -> dict[str, float]:
        """The ``top_k`` most likely flower names with their probabilities, most likely first.

        Args:
            image: a PIL image, or a path opened with :meth:`open`.
            top_k: how many classes to return.
        """
        return self.predict_and_score(image, top_k)[0]

    def predict_and_score(self, image: Image.Image | str | Path, top_k: int = 5) -> tuple[dict[str, float], float]:
        """:meth:`predict`, and the image's score under :attr:`unsure_rule` (higher: more like a known class; the
        top-1 probability without a rule), from the same forward pass.

        Args:
            image: a PIL image, or a path opened with :meth:`open`.
            top_k: how many classes to return.
        """
        (answer,) = self.predict_and_score_batch([image], top_k)
        return answer

    def predict_and_score_batch(
        self, images: Sequence[Image.Image | str | Path], top_k: int = 5
    ) -> list[tuple[dict[str, float], float]]:
        """:meth:`predict_and_score` of each image, from one forward pass over all of them (with TTA, over all their
        views): how a server answers the photos that waited together.

        Args:
            images: PIL images, or paths opened with :meth:`open`; none gives ``[]``.
            top_k: how many classes to return for each.
        """
        opened = [image if isinstance(image, Image.Image) else self.open(image) for image in images]
        return self.predict_and_score_prepared([self.prepare(image) for image in opened], top_k)

    def predict_and_score_prepared(
        self, inputs: Sequence[torch.Tensor], top_k: int = 5
    ) -> list[tuple[dict[str, float], float]]:
        """:meth:`predict_and_score_batch` of images already put through :meth:`prepare`, from one forward pass:
        for a server that shows and explains the same input it classified, preprocessed once.

        Args:
            inputs: :meth:`prepare`'s tensors, one per image; none gives ``[]``.
            top_k: how many classes to return for each.
        """
        if not inputs:
            return []
        logits = self.logits(torch.cat(list(inputs)) if len(inputs) > 1 else inputs[0])
        return [self._top_and_score(views, top_k) for views in logits.split(len(inputs[0]))]

    def _top_and_score(self, logits: torch.Tensor, top_k: int) -> tuple[dict[str, float], float]:
        """The top ``top_k`` and the score of one image, from the logits of its views (one row without TTA)."""
        # With TTA, each view's calibrated probabilities, averaged (as flowers_hf.evaluate --tta does).
        probabilities = logits.softmax(-1).mean(0)
        scores, indices = probabilities.topk(min(top_k, len(self.class_names)))
        top = {self.class_names[i]: float(s) for s, i in zip(scores.tolist(), indices.tolist(), strict=True)}
        rule = self.unsure_rule
        if rule is None or rule.score == "msp":
            return top, float(scores[0])
        # The first view is the plain input, which the rule's threshold was chosen on.
        return top, float(known_score(logits[:1].numpy(), rule.score)[0])

    @property
    def unsure_rule(self) -> OpenSetRule | None:
        """When to say "none of these classes": the stored :attr:`open_set_rule`, else the top-1 probability below
        the calibration's ``unsure_threshold``; ``None`` (always name a class) for a model with neither."""
        if self.open_set_rule is not None:
            return self.open_set_rule
        return None if self.unsure_threshold is None else OpenSetRule("msp", self.unsure_threshold)

    def is_unsure(self, prediction: dict[str, float] | float, score: float | None = None) -> bool:
        """Whether a prediction lies below :attr:`unsure_rule`'s threshold: "not a flower I know" rather than a name.
        Always ``False`` for a model without a rule.

        Args:
            prediction: a :meth:`predict` result, or its top-1 probability.
            score: the image's score from :meth:`predict_and_score`; needed where the rule reads the logits.
        """
        rule = self.unsure_rule
        if rule is None:
            return False
        if score is None:
            if rule.score != "msp":
                raise ValueError(f"the rule on the {rule.score} score needs the image's score (predict_and_score)")
            score = max(prediction.values()) if isinstance(prediction, dict) else float(prediction)
        return score < rule.threshold

    def model_view(self, image: Image.Image | torch.Tensor) -> np.ndarray:
        """The preprocessed image as a displayable HWC uint8 array: what the model was shown.

        Args:
            image: a photo, or the input :meth:`prepare` gave for it (its first view is shown: nothing is
                preprocessed again).
        """
        pixels = self.preprocess(image) if isinstance(image, Image.Image) else image.reshape(-1, *image.shape[-3:])[0]
        shown = denormalize(pixels.cpu(), self.prep.mean, self.prep.std)
        return (shown * 255).round().astype(np.uint8)
