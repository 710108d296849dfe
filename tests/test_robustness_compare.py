"""bench/robustness.py end to end on tiny presets: both recipes trained, both evaluated, one table and one JSON.

The script's four commands (``python train.py …`` and ``python -m flowers_hf.evaluate …``) run in this process, each
through its entry point's ``main`` with the command's arguments: the same work without four Python starts that each
import torch and transformers again (the commands themselves run as subprocesses in test_train.py and
test_evaluate.py)."""

import json
import sys

import numpy as np
import pytest
import yaml

import train
from bench import robustness
from flowers_hf import evaluate
from flowers_hf.data import load_data
from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.subset import sample_split
from flowers_hf.serving.classifier import ImageClassifier

pytestmark = pytest.mark.slow  # bench/robustness.py end to end: two trainings and two evaluations

TINY = {
    "dataset": "synthetic", "synthetic_num_classes": 4, "synthetic_images_per_class": 12, "synthetic_image_size": 32,
    "model": "test_resnet", "pretrained": False, "image_size": 32, "per_device_train_batch_size": 8,
    "learning_rate": 0.01, "dataloader_num_workers": 0, "report_to": "none", "disable_tqdm": True, "seed": 0,
}  # fmt: skip
ROBUST = {"augment": "strong", "mixup_alpha": 0.2, "cutmix_alpha": 1.0, "label_smoothing_factor": 0.1, "ema_decay": 0.9}


def _in_this_process(command: list[str]) -> None:
    """bench/robustness.py's ``run``: the command's entry point called here with its arguments; an error raises, as
    ``subprocess.run(check=True)`` does for a command that fails."""
    print("$ " + " ".join(command), file=sys.stderr)
    match command:
        case [python, "train.py", *argv] if python == sys.executable:
            train.main(argv)
        case [python, "-m", "flowers_hf.evaluate", *argv] if python == sys.executable:
            evaluate.main(argv)
        case _:
            raise AssertionError(f"a command bench/robustness.py should not run: {command}")


def test_both_recipes_are_trained_evaluated_and_compared(tmp_path, monkeypatch, capsys):
    presets = {}
    for name, options in (("plain", TINY), ("robust", {**TINY, **ROBUST})):
        presets[name] = tmp_path / f"{name}.yaml"
        presets[name].write_text(yaml.safe_dump(options))
    flags = [
        "--plain", str(presets["plain"]), "--robust", str(presets["robust"]), "--epochs", "1",
        "--max_eval_samples", "12", "--output_dir", str(tmp_path / "compare"),
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["bench/robustness.py", *flags])
    monkeypatch.setattr(robustness, "run", _in_this_process)
    robustness.main()
    stdout = capsys.readouterr().out

    *table, last = stdout.strip().splitlines()
    results = json.loads(last)["results"]
    assert set(results) == {"plain", "robust"}
    data_args = DataArguments(**{k: TINY[k] for k in TINY if k.startswith(("dataset", "synthetic"))})
    subset = sample_split(load_data(args=data_args).splits["test"], 12)  # evaluate's --max_eval_samples rule
    for name, figures in results.items():
        assert figures["images"] == 12 and len(figures["per_corruption"]) == 12
        # By hand, from the run folder the recipe trained: top-1 on the 12 images, plain and with ten-crop TTA.
        for key, tta in (("accuracy", None), ("tta_accuracy", "ten_crop")):
            classifier = ImageClassifier.from_pretrained(tmp_path / "compare" / name, tta=tta)
            answers = [next(iter(classifier.predict(image, top_k=1))) for image in subset["image"]]
            right = sum(
                answer == classifier.class_names[label] for answer, label in zip(answers, subset["label"], strict=True)
            )
            assert figures[key] == pytest.approx(right / 12), (name, key)
        # The mean corruption accuracy is the mean over the corruptions (each the mean over its severities).
        assert figures["mean_corruption_accuracy"] == pytest.approx(np.mean(list(figures["per_corruption"].values())))
        if figures["accuracy"]:
            relative = figures["mean_corruption_accuracy"] / figures["accuracy"]
            assert figures["relative_mean_corruption_accuracy"] == pytest.approx(relative)
        # The robust preset's options reached training: its run folder recorded them.
        config = yaml.safe_load((tmp_path / "compare" / name / "train_config.yaml").read_text())
        assert (config["augment"], config["mixup_alpha"]) == (("strong", 0.2) if name == "robust" else ("default", 0))
    # The table's last column is robust minus plain.
    row = next(line for line in table if line.startswith("clean accuracy")).split()
    expected = results["robust"]["accuracy"] - results["plain"]["accuracy"]
    assert float(row[-1]) == round(expected, 3)
