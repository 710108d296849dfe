"""The inference wrapper the demo and the benchmarks use: loaded from a run folder, it agrees with `pipeline`; a batch
gives what each photo gives alone."""

import numpy as np
import pytest
from PIL import Image, ImageOps
from transformers import pipeline

from flowers_hf.export.__main__ import main as export
from flowers_hf.serving.classifier import ImageClassifier
from flowers_hf.serving.open_set import OpenSetRule


@pytest.fixture(scope="module")
def classifier(tiny_run):
    return ImageClassifier.from_pretrained(tiny_run)


def _photo(seed: int = 0, size=(50, 40)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.slow
def test_preprocessing_and_names_come_from_the_run(classifier):
    assert classifier.prep.input_size == (32, 32)
    assert classifier.class_names[:3] == ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]
    assert len(classifier.class_names) == 6


@pytest.mark.slow
def test_predict_matches_the_transformers_pipeline(classifier, tiny_run):
    image = _photo()
    ours = classifier.predict(image, top_k=3)
    theirs = {e["label"]: e["score"] for e in pipeline("image-classification", model=str(tiny_run))(image, top_k=3)}
    assert list(ours) == list(theirs)  # same order, most likely first
    for name, score in ours.items():
        assert score == pytest.approx(theirs[name], abs=1e-5)


@pytest.mark.slow
def test_top_k_is_capped_by_the_number_of_classes_and_sums_to_one(classifier):
    assert len(classifier.predict(_photo(1), top_k=5)) == 5
    scores = classifier.predict(_photo(1), top_k=10)
    assert len(scores) == 6
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert list(scores.values()) == sorted(scores.values(), reverse=True)


@pytest.mark.slow
def test_predict_opens_paths(classifier, tmp_path):
    image = _photo(2)
    image.save(tmp_path / "flower.png")
    assert classifier.predict(tmp_path / "flower.png") == pytest.approx(classifier.predict(image))


@pytest.mark.slow
def test_model_view_is_the_cropped_input_in_pixels(classifier):
    flat = Image.new("RGB", (64, 48), (200, 100, 50))
    view = classifier.model_view(flat)
    assert view.shape == (32, 32, 3) and view.dtype == np.uint8
    assert np.abs(view.astype(int) - [200, 100, 50]).max() <= 1


def test_a_folder_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a model folder"):
        ImageClassifier.from_pretrained(tmp_path)


def test_a_hub_model_that_cannot_be_fetched_is_a_clear_error():
    with pytest.raises(ConnectionError, match="Cannot load someone/flowers-resnet18"):
        ImageClassifier.from_pretrained("someone/flowers-resnet18")  # offline (HF_HUB_OFFLINE=1), not cached


@pytest.mark.slow
def test_flip_tta_averages_the_photo_and_its_mirror_image(tiny_run, classifier):
    # 34 × 33: the shorter side is already the 32-px model's eval resize (32 / crop_pct 0.95), and the crop leaves
    # 1 px on the left and on the right, so the centre crop of the mirror image is the mirror image of the crop.
    photo = _photo(2, size=(34, 33))
    plain = classifier.predict(photo, top_k=6)
    mirrored = classifier.predict(ImageOps.mirror(photo), top_k=6)
    averaged = ImageClassifier.from_pretrained(tiny_run, tta="flip").predict(photo, top_k=6)
    assert averaged == pytest.approx({name: (plain[name] + mirrored[name]) / 2 for name in plain}, abs=1e-5)
    assert sum(averaged.values()) == pytest.approx(1.0, abs=1e-5)


def _photos(tmp_path) -> list:
    """Photos of other sizes and modes than the training images, one of them as a path."""
    _photo(3, size=(500, 375)).save(tmp_path / "photo.jpg")
    return [_photo(0), _photo(1, size=(33, 200)), _photo(2, size=(120, 90)).convert("L"), tmp_path / "photo.jpg"]


def _assert_batch_equals_alone(classifier: ImageClassifier, photos: list, tolerance: float = 1e-6) -> None:
    batch = classifier.predict_and_score_batch(photos, top_k=6)
    alone = [classifier.predict_and_score(photo, top_k=6) for photo in photos]
    assert len(batch) == len(photos)
    for (top, score), (top_alone, score_alone) in zip(batch, alone, strict=True):
        assert list(top) == list(top_alone)  # the same classes, in the same order
        assert top == pytest.approx(top_alone, abs=tolerance)
        assert score == pytest.approx(score_alone, abs=tolerance)


@pytest.fixture(scope="module")
def exported_run(tiny_export):
    """The session's copy of the tiny run with its ONNX exports (conftest.py; int8 static: calibrated on the run's
    validation images), shared with test_export.py."""
    return tiny_export[0]


@pytest.mark.slow
@pytest.mark.parametrize(("tta", "rule"), [(None, None), (None, "energy"), ("flip", "energy"), ("ten_crop", None)])
def test_a_batch_gives_each_photo_what_it_gets_alone(tiny_run, tmp_path, tta, rule):
    classifier = ImageClassifier.from_pretrained(tiny_run, tta=tta)
    # The energy score comes from the plain view's logits, the probability score from the averaged views.
    classifier.open_set_rule = OpenSetRule(rule, threshold=0.0) if rule else None
    _assert_batch_equals_alone(classifier, _photos(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_a_batch_gives_each_photo_what_it_gets_alone_on_the_onnx_backends(exported_run, tmp_path, backend):
    _assert_batch_equals_alone(ImageClassifier.from_pretrained(exported_run, backend=backend), _photos(tmp_path))


@pytest.mark.slow
def test_dynamic_int8_answers_depend_slightly_on_the_batch(untrained_folder, tmp_path):
    # Dynamic quantisation takes its activation ranges from the whole batch at run time: a photo's probabilities
    # move a little with the photos batched with it (the demo's README says so).
    export([str(untrained_folder), "--quantize", "int8", "--int8_method", "dynamic", "--eval_split", "none"])
    classifier = ImageClassifier.from_pretrained(untrained_folder, backend="onnx-int8")
    photos = _photos(tmp_path)
    batch = classifier.predict_and_score_batch(photos)
    alone = [classifier.predict_and_score(photo) for photo in photos]
    gaps = [abs(batch[i][0][name] - alone[i][0][name]) for i in range(len(photos)) for name in alone[i][0]]
    assert 0 < max(gaps) < 1e-2  # near-equal scores of this untrained model can even swap places


def test_an_empty_batch_is_answered_without_a_forward_pass(untrained_folder):
    classifier = ImageClassifier.from_pretrained(untrained_folder)
    classifier.model = None  # a forward pass would fail
    assert classifier.predict_and_score_batch([]) == []
