"""bench/load.py against the running demo: ten clients at once, every request answered with the library's label.
Counts and consistency only, never timings."""

import json

import pytest
from helpers import free_port

from bench import load
from flowers_hf.inference import FlowerClassifier


@pytest.mark.slow
def test_ten_clients_five_requests_each_all_answered_with_the_library_label(demo_server, tiny_run, tmp_path, capsys):
    summary = load.main(["--url", demo_server.url, "--clients", "10", "--requests", "5"])
    assert (summary["sent"], summary["answered"], summary["failed"], summary["lost"]) == (50, 50, 0, 0)
    assert load.all_answered(summary)
    photo = load.sample_photo(tmp_path / "photo.jpg")  # the photo main sent: drawn the same every time
    expected = next(iter(FlowerClassifier.from_pretrained(tiny_run).predict(photo)))
    assert summary["top_labels"] == {expected: 50}

    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last_line) == summary
    assert set(load.REQUIRED_KEYS) <= set(summary)
    assert 0 < summary["latency_ms_p50"] <= summary["latency_ms_p95"] <= summary["latency_ms_max"]
    assert summary["throughput_req_s"] > 0 and summary["machine"]["cpu_count"] >= 1


def test_a_demo_that_does_not_answer_counts_every_request_as_failed():
    summary = load.run_load(f"http://127.0.0.1:{free_port()}/", load.ROOT / "demo" / "app.py", clients=2, requests=3)
    assert (summary["sent"], summary["answered"], summary["failed"], summary["lost"]) == (6, 0, 6, 0)
    assert not load.all_answered(summary)
    assert summary["latency_ms_p50"] is None and "could not connect" in next(iter(summary["errors"]))
