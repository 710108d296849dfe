"""Image embeddings for the audit, computed once and cached in the output folder: the pooled features (timm's
``pre_logits``) of a trained run's backbone (``--model``) or of a timm architecture (``--backbone``), on the decoded,
centre-cropped copy of every split that evaluation uses (``flowers_hf.data.cache``)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import datasets
import numpy as np
import timm
import torch
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from flowers_hf.audit.arguments import AuditArguments
from flowers_hf.core.errors import OfflineError
from flowers_hf.data.arguments import TransformArguments
from flowers_hf.data.cache import cache_images
from flowers_hf.data.identity import DatasetIdentity
from flowers_hf.data.preprocessing import Preprocessing, resolve_preprocessing
from flowers_hf.data.transforms import BatchTransform, build_eval_transform, collate_fn, eval_crop
from flowers_hf.serving.run import load_run
from flowers_hf.training.frozen_features import pre_logits

logger = logging.getLogger(__name__)


def feature_model(args: AuditArguments) -> tuple[torch.nn.Module, Preprocessing, str]:
    """The timm module that gives the features, its preprocessing, and what it is (for the cache key and report)."""
    overrides = TransformArguments(image_size=args.image_size)
    if args.model:
        run = load_run(args.model)
        timm_model = run.classifier.model.timm_model
        weights = Path(args.model).expanduser() / "model.safetensors"
        stamp = weights.stat().st_mtime_ns if weights.is_file() else None
        prep = resolve_preprocessing(timm_model, overrides) if args.image_size else run.prep
        return timm_model, prep, f"run {args.model} ({stamp})"
    torch.manual_seed(0)  # random init (--pretrained false) is the same every time, so the cache stays valid
    try:
        timm_model = timm.create_model(args.backbone, pretrained=args.pretrained, num_classes=0)
    except (OSError, RuntimeError) as error:
        raise OfflineError(
            f"Cannot load {args.backbone}'s pretrained weights ({str(error).splitlines()[0]}); use --model RUN, or "
            "--pretrained false for random weights"
        ) from error
    weights = "pretrained" if args.pretrained else "random init (seed 0)"
    return timm_model, resolve_preprocessing(timm_model, overrides), f"timm {args.backbone}, {weights}"


def embeddings(
    data: datasets.DatasetDict, args: AuditArguments, identity: DatasetIdentity, output_dir: Path
) -> tuple[np.ndarray, str]:
    """The features of every image, splits in ``data``'s order (the catalog's rows), and what gave them; read from
    ``output_dir/features-<key>.safetensors`` when this data and model were embedded before."""
    timm_model, prep, described = feature_model(args)
    sizes = {name: len(split) for name, split in data.items()}
    key = json.dumps([identity.to_dict(), sizes, described, repr(prep)], sort_keys=True, default=str)
    path = output_dir / f"features-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
    if path.is_file():
        logger.info("Features from %s (cached)", path)
        return load_file(path)["features"], described
    device = "cuda" if torch.cuda.is_available() else "cpu"
    timm_model = timm_model.to(device).eval()
    features = np.concatenate([_split_features(timm_model, prep, split, name, args, device)
                               for name, split in data.items()])  # fmt: skip
    save_file({"features": features}, path)
    return features, described


@torch.inference_mode()
def _split_features(
    timm_model: torch.nn.Module, prep: Preprocessing, split: datasets.Dataset, name: str, args: AuditArguments,
    device: str,
) -> np.ndarray:  # fmt: skip
    cropped = cache_images(split, eval_crop(prep), f"Decoding and cropping the {name} images once")
    batches = torch.utils.data.DataLoader(
        cropped.with_transform(BatchTransform(build_eval_transform(prep, cropped=True))),
        batch_size=args.batch_size,
        collate_fn=collate_fn,
    )
    progress = tqdm(batches, desc=f"Features of {name}", disable=args.disable_tqdm, leave=False)
    return np.concatenate([pre_logits(timm_model, b["pixel_values"].to(device)).float().cpu().numpy()
                           for b in progress]).astype(np.float32)  # fmt: skip
