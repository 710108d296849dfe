"""load_run: the one reader of a finished run (evaluate, export and the demo read a run folder through it)."""

import json
import shutil

import pytest
import yaml

from flowers_hf.serving.run import RUN_CONFIG_FILE, load_run, run_data_options


@pytest.mark.slow
def test_a_run_folder_reads_back_with_its_data_options_and_identity(tiny_run, tmp_path):
    run = load_run(tiny_run)
    saved = yaml.safe_load((tiny_run / RUN_CONFIG_FILE).read_text())
    assert run.data_options["dataset"] == "synthetic"
    assert run.data_options["synthetic_num_classes"] == 6 == len(run.classifier.class_names)
    assert all(run.data_options[name] == saved[name] for name in run.data_options)
    assert "learning_rate" not in run.data_options  # training options are not data options
    recorded = json.loads((tiny_run / "config.json").read_text())["dataset"]
    assert run.identity.synthetic and run.identity.to_dict() == recorded
    assert run.prep.input_size == (32, 32)
    # A model folder without train.py's config (as a Hub repo serves one): the model, no data options.
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_run / name, bare / name)
    assert load_run(bare).data_options == {} == run_data_options(bare)
    assert load_run(bare).classifier.class_names == run.classifier.class_names
