"""bench/load.py against the running demo: ten clients at once, every request answered with the library's label; a
short soak with the demo's memory; batched against unbatched. Counts and consistency only, never timings."""

import json
import threading
from types import SimpleNamespace

import pytest
from helpers import ROOT, free_port

from bench import clients, load, serve, soak
from bench.arguments import LoadArguments
from bench.load_report import all_answered
from flowers_hf.serving.classifier import ImageClassifier


@pytest.mark.slow
def test_ten_clients_five_requests_each_all_answered_with_the_library_label(demo_server, tiny_run, tmp_path, capsys):
    summary = load.main(["--url", demo_server.url, "--clients", "10", "--requests", "5"])
    assert (summary["sent"], summary["answered"], summary["failed"], summary["lost"]) == (50, 50, 0, 0)
    assert all_answered(summary)
    photo = clients.sample_photo(tmp_path / "photo.jpg")  # the photo main sent: drawn the same every time
    expected = next(iter(ImageClassifier.from_pretrained(tiny_run).predict(photo)))
    assert summary["top_labels"] == {expected: 50}

    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last_line) == summary
    assert set(load.REQUIRED_KEYS) <= set(summary)
    assert 0 < summary["latency_ms_p50"] <= summary["latency_ms_p95"] <= summary["latency_ms_max"]
    assert summary["throughput_req_s"] > 0 and summary["machine"]["cpu_count"] >= 1


def test_a_demo_that_does_not_answer_counts_every_request_as_failed():
    summary = clients.run_load(f"http://127.0.0.1:{free_port()}/", ROOT / "demo" / "app.py", clients=2, requests=3)
    assert (summary["sent"], summary["answered"], summary["failed"], summary["lost"]) == (6, 0, 6, 0)
    assert not all_answered(summary)
    assert summary["latency_ms_p50"] is None and "could not connect" in next(iter(summary["errors"]))


@pytest.mark.slow
def test_a_short_soak_reports_four_quarters_and_the_demos_memory(demo_server):
    pid = str(demo_server.process.pid)
    summary = load.main(["--url", demo_server.url, "--pid", pid, "--soak", "--clients", "4", "--requests", "25"])
    assert (summary["sent"], summary["answered"], summary["failed"], summary["lost"]) == (100, 100, 0, 0)
    soak = summary["soak"]
    assert [q["requests"] for q in soak["quarters"]] == [25] * 4 and not soak["stopped_early"]
    assert all(q["answered"] == 25 and q["latency_ms_p50"] <= q["latency_ms_p95"] for q in soak["quarters"])
    # The demo's own memory: a Python process with torch and Gradio, far above a client's nothing.
    assert soak["memory_samples"] >= 2 and all(q["rss_mb"] > 100 for q in soak["quarters"])
    assert soak["rss_mb_peak"] >= max(q["rss_mb_max"] for q in soak["quarters"]) >= soak["rss_mb_start"] > 100
    growth = soak["quarters"][-1]["rss_mb"] - soak["quarters"][0]["rss_mb"]
    assert soak["rss_mb_growth"] == pytest.approx(growth, abs=0.11)
    assert set(load.REQUIRED_KEYS) <= set(summary)


def test_quarters_split_the_requests_by_when_they_ended_with_the_memory_at_each_end():
    began = 100.0
    outcomes = [clients.Outcome("answered", 10.0 * (n + 1), ended=began + n + 1) for n in range(8)]
    outcomes[5] = clients.Outcome("failed", 1.0, "boom", ended=began + 6)
    samples = [(began, 500.0), (began + 1.5, 510.0), (began + 4.0, 530.0), (began + 7.5, 520.0)]
    parts = soak.quarters(outcomes[::-1], began, samples)  # in any order: sorted by when they ended
    assert [(q["requests"], q["answered"], q["failed"]) for q in parts] == [(2, 2, 0), (2, 2, 0), (2, 1, 1), (2, 2, 0)]
    assert [q["latency_ms_p50"] for q in parts] == [15.0, 35.0, 50.0, 75.0]  # the failed request has no latency
    # Memory at each quarter's end: its last sample, or the last before it where none fell inside.
    assert [q["rss_mb"] for q in parts] == [510.0, 530.0, 530.0, 520.0]
    assert [q["rss_mb_max"] for q in parts] == [510.0, 530.0, 530.0, 520.0]
    assert [q["ended_s"] for q in parts] == [2.0, 4.0, 6.0, 8.0]
    assert all(q["rss_mb"] is None for q in soak.quarters(outcomes, began, []))


def test_the_soak_stays_on_this_machine_and_has_its_own_defaults():
    args = LoadArguments(url="http://127.0.0.1:7860/", soak=True)
    assert (args.clients, args.requests) == (20, 50)  # 1,000 requests in all
    assert LoadArguments(model="runs/x", soak=True, clients=30).requests == 34  # at least 1,000
    assert (LoadArguments(model="runs/x").clients, LoadArguments(model="runs/x").requests) == (10, 5)
    with pytest.raises(ValueError, match="this machine only"):
        LoadArguments(url="http://example.org:7860/", soak=True)
    with pytest.raises(ValueError, match="starts the demo itself"):
        LoadArguments(url="http://127.0.0.1:7860/", compare_batching=True)
    with pytest.raises(ValueError, match="one of --url"):
        LoadArguments(model="runs/x", make_model="resnet18")


def test_make_model_writes_a_folder_the_demo_serves_at_the_asked_size(tmp_path):
    folder = serve.make_model("test_resnet", 48, tmp_path / "model")
    classifier = ImageClassifier.from_pretrained(folder)
    assert classifier.prep.input_size == (48, 48) and len(classifier.class_names) == 102


@pytest.mark.slow
def test_batching_is_compared_with_one_photo_per_pass_in_one_run(tiny_run, capsys):
    summary = load.main(
        ["--model", str(tiny_run), "--compare_batching", "--clients", "4", "--requests", "3", "--rounds", "1",
         "--alone_requests", "3"]
    )  # fmt: skip
    batching = summary["batching"]
    for mode, flags in (("unbatched", ["--max_batch_size", "1"]), ("batched", [])):
        assert batching[mode]["flags"] == flags
        assert (batching[mode]["sent"], batching[mode]["answered"]) == (12, 12)
        assert (batching[mode]["alone"]["sent"], batching[mode]["alone"]["answered"]) == (3, 3)
        assert batching[mode]["demo_cpu_ms_per_request"] > 0 and batching[mode]["clients_cpu_ms_per_request"] > 0
    ratio = batching["batched"]["throughput_req_s"] / batching["unbatched"]["throughput_req_s"]
    assert batching["throughput_ratio"] == pytest.approx(ratio, abs=0.01)
    cpu = batching["unbatched"]["demo_cpu_ms_per_request"] / batching["batched"]["demo_cpu_ms_per_request"]
    assert batching["demo_cpu_ratio"] == pytest.approx(cpu, abs=0.01)
    assert summary["answered"] == summary["sent"] == 12 and all_answered(summary)
    assert set(load.REQUIRED_KEYS) <= set(summary)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary


def test_a_label_without_confidences_counts_as_failed(monkeypatch):
    # The demo's answer for a photo of a batch it could not classify: the message as the label, no confidences.
    answers = iter([{"label": "rose", "confidences": [{"label": "rose", "confidence": 0.9}]},
                    {"label": "This file is not an image that can be read.", "confidences": None}])  # fmt: skip
    job = SimpleNamespace(result=lambda timeout: next(answers))
    monkeypatch.setattr(clients, "Client", lambda url, verbose: SimpleNamespace(submit=lambda *a, **k: job))
    outcomes = clients.client_session("http://127.0.0.1:1/", ROOT / "README.md", 2, threading.Barrier(1), 5.0)
    assert [(o.status, o.detail) for o in outcomes] == [
        ("answered", "rose"),
        ("failed", "This file is not an image that can be read."),
    ]


def test_any_request_not_answered_in_either_mode_fails_the_comparison():
    summary = {"answered": 3, "sent": 3}
    mode = {"answered": 2, "sent": 2, "alone": {"answered": 1, "sent": 1}}
    assert all_answered(summary | {"batching": {"unbatched": mode, "batched": mode}})
    broken = mode | {"alone": {"answered": 0, "sent": 1}}
    assert not all_answered(summary | {"batching": {"unbatched": mode, "batched": broken}})
