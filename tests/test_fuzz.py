"""Fuzzed uploads and data (bench/fuzz_inputs.py): real files of every format, broken the ways decoders are fuzzed,
through the classifier, the demo's /predict over HTTP (batched) and the data path, with bench/fuzz.py's functions.
Each input is answered, refused with a one-line message, or skipped and listed: none crashes, none hangs, the demo's
memory stays bounded, and its log has one line per refused upload, no traceback. FUZZ_RUN inputs through each path
(every structural case and a few seeded mutations); ``python bench/fuzz.py`` sends 1,000 through each."""

import base64
import importlib.util
import io
import logging

import psutil
import pytest
from gradio_client import handle_file
from helpers import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.fuzz import (
    GOOD_PER_CLASS,
    SEED_OF,
    PathOutcome,
    one_line,
    through_a_training_folder,
    through_the_classifier,
    through_the_demo,
)
from bench.fuzz_inputs import fuzz_inputs, seed_files, table
from flowers_hf.core.errors import UnreadableImageError
from flowers_hf.data.images import MAX_SIDE, open_image
from flowers_hf.serving.classifier import ImageClassifier

spec = importlib.util.spec_from_file_location("flowers_demo", ROOT / "demo" / "app.py")
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)

SEEDS = seed_files()
REQUEST_LIMIT_S = app.REQUEST_TIMEOUT_S + 10  # the demo ends a batch after 30 s; a little more for the HTTP round trip


FUZZ_RUN = 250  # through each path: the 245 structural cases (bench/fuzz_inputs.py), then seeded mutations
MB = 2**20


def _outcomes_are_right(outcome: PathOutcome) -> None:
    counts = outcome.counts
    assert outcome.faults == {} and counts["crashed"] == counts["hung"] == 0
    assert counts["answered"] + counts["refused"] == counts["tried"] == FUZZ_RUN
    assert not any("_intact_" in name for name in outcome.refused)  # every whole file of every format is read
    assert all("too large to open safely" in outcome.refused[name] for name in outcome.refused if "_bomb_" in name)


def test_fuzzed_files_through_the_classifier_are_answered_or_refused_in_one_line(untrained_folder, tmp_path):
    classifier = ImageClassifier.from_pretrained(untrained_folder)
    inputs = fuzz_inputs(FUZZ_RUN, seed=SEED_OF["classifier"])
    assert sum("_bomb_" in name for name, _ in inputs) == 5  # every structural case is among them
    outcome = through_the_classifier(classifier, inputs, tmp_path)
    print(f"\n{FUZZ_RUN} fuzzed files through ImageClassifier.predict\n{table(outcome.counts)}")
    _outcomes_are_right(outcome)
    assert (outcome.counts["answered"], outcome.counts["refused"]) == (len(outcome.answered), len(outcome.refused))
    assert {name.split("_intact_")[-1] for name in outcome.answered if "_intact_" in name} == set(SEEDS)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(name=st.sampled_from(sorted(seed_files())), flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
def test_open_image_gives_a_small_rgb_photo_or_a_one_line_refusal_for_any_flipped_bits(name, flips):
    data = bytearray(SEEDS[name])
    for flip in flips:
        data[flip % len(data)] ^= 1 << (flip % 8)
    try:
        image = open_image(io.BytesIO(bytes(data)))
    except UnreadableImageError as error:
        one_line(str(error))
    else:
        assert image.mode == "RGB" and max(image.size) <= MAX_SIDE and min(image.size) >= 1


def test_a_refused_upload_is_logged_in_one_line_and_a_bug_still_raises(untrained_folder, caplog):
    classifier = ImageClassifier.from_pretrained(untrained_folder)
    broken = {"path": None, "url": "data:image/png;base64,abc"}
    with caplog.at_level(logging.WARNING, logger="demo"):
        (entry,) = app.classify_uploads(classifier, [broken])
    (record,) = caplog.records
    assert record.getMessage() == f"refused an upload (a pasted image): {entry.answer}"
    assert record.exc_info is None  # a line, not a traceback

    def bug(image):
        raise RuntimeError("a bug in the preprocessing")

    classifier.prepare = bug
    with pytest.raises(RuntimeError, match="a bug"):  # not turned into a refusal: Gradio logs its traceback
        app.classify_uploads(classifier, [{"path": None, "url": _photo_data_url()}])


def _photo_data_url() -> str:
    return "data:image/jpeg;base64," + base64.b64encode(SEEDS["photo.jpg"]).decode()


def _log_since(log, offset: int) -> str:
    return log.read_bytes()[offset:].decode(errors="replace")


@pytest.mark.slow
def test_fuzzed_uploads_to_the_demo_in_batches(demo_server, client, photo, tmp_path):
    # Eight requests in flight at a time, so that the demo answers them in batches (test_demo checks the batching).
    client.predict(handle_file(str(photo)), api_name="/predict")  # warmed up: the memory before is the serving one
    process = psutil.Process(demo_server.process.pid)
    rss_before, log_offset = process.memory_info().rss, demo_server.log.stat().st_size
    outcome = through_the_demo(client, fuzz_inputs(FUZZ_RUN, seed=SEED_OF["demo"]), tmp_path, REQUEST_LIMIT_S)
    counts, sent_again = outcome.counts, outcome.extra["sent_again"]
    print(f"\n{FUZZ_RUN} fuzzed uploads to the demo in {outcome.extra['seconds']:.0f} s\n{table(counts)}")
    print(f"{len(sent_again)} sent again after their event stream closed: {sent_again}")
    assert len(sent_again) <= 3, sent_again  # the connection, not the server: its log holds no traceback (below)
    assert outcome.faults == {} and counts["crashed"] == counts["hung"] == 0
    assert counts["answered"] + counts["refused"] == FUZZ_RUN
    assert counts["answered"] > FUZZ_RUN // 20 and counts["refused"] > FUZZ_RUN * 3 // 10
    assert demo_server.process.poll() is None
    assert len(client.predict(handle_file(str(photo)), api_name="/predict")["confidences"]) == 5  # still serving
    rss_after = process.memory_info().rss
    print(f"demo RSS {rss_before / MB:.0f} MB before, {rss_after / MB:.0f} MB after")
    assert rss_after - rss_before < 50 * MB
    log = _log_since(demo_server.log, log_offset)
    assert "Traceback" not in log
    assert log.count("refused an upload (") == counts["refused"]  # one line each, naming the file and why


@pytest.mark.slow
def test_a_folder_seeded_with_fuzzed_files_loads_and_trains_with_each_bad_one_listed(tmp_path):
    # Two classes of 20 good images in each split; the fuzzed files go into the training split's classes.
    inputs = fuzz_inputs(FUZZ_RUN, seed=SEED_OF["folder"])
    outcome = through_a_training_folder(inputs, tmp_path)
    good = 2 * GOOD_PER_CLASS
    assert outcome.extra["splits"] == {"train": good + FUZZ_RUN, "validation": good, "test": good}  # every file found
    listed, names = outcome.extra["listed"], {name for name, _ in inputs}
    assert set(outcome.refused) <= names and all(entry["split"] == "train" for entry in listed)  # no good image listed
    assert not any("_intact_" in name for name in outcome.refused)
    assert {name for name in names if "_bomb_" in name} <= set(outcome.refused)
    print(f"\n{FUZZ_RUN} fuzzed files in a training folder: {len(listed)} listed and left out")
    assert FUZZ_RUN * 3 // 10 < len(listed) < FUZZ_RUN and outcome.extra["test_accuracy"] >= 0
