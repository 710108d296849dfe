import pytest
from transformers import HfArgumentParser

from flowers_hf.data.arguments import DEFAULT_HUB_DATASET, DataArguments, TransformArguments


def test_defaults_point_at_the_official_split_on_the_hub_at_a_pinned_commit():
    args = DataArguments()
    assert args.dataset == DEFAULT_HUB_DATASET == "Donghyun99/Oxford-Flower-102"
    assert args.dataset_revision == "7e43fe37eeb9278138ab0bd2d0abb10d0f703d09"


def test_only_a_known_copy_gets_a_pinned_revision():
    assert DataArguments(dataset="beans").dataset_revision is None
    assert DataArguments(dataset_revision="main").dataset_revision == "main"
    with pytest.raises(ValueError, match="--class_names"):
        DataArguments(class_names="oxford")


def test_command_line_parses_into_both_dataclasses():
    parser = HfArgumentParser((DataArguments, TransformArguments))
    data, transform = parser.parse_args_into_dataclasses(
        args=[
            "--dataset",
            "synthetic",
            "--synthetic_num_classes",
            "5",
            "--mean",
            "0.1",
            "0.2",
            "0.3",
            "--image_size",
            "64",
        ]
    )
    assert (data.dataset, data.synthetic_num_classes) == ("synthetic", 5)
    assert transform.mean == [0.1, 0.2, 0.3] and transform.image_size == 64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"validation_fraction": 0.0}, "validation_fraction"),
        ({"validation_fraction": 0.6, "test_fraction": 0.5}, "leave some images"),
        ({"synthetic_num_classes": 1}, "synthetic_num_classes"),
        ({"synthetic_images_per_class": 2}, "synthetic_images_per_class"),
        ({"synthetic_image_format": "gif"}, "'jpeg' or 'png'"),
    ],
)
def test_bad_data_arguments_are_refused_with_the_flag_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataArguments(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_pct": 1.5}, "crop_pct"),
        ({"interpolation": "lanczos"}, "interpolation"),
        ({"mean": [0.5, 0.5]}, "3 values"),
        ({"std": [0.5, 0.0, 0.5]}, "positive"),
        ({"min_crop_scale": 0.0}, "min_crop_scale"),
        ({"hflip_prob": 2.0}, "hflip_prob"),
        ({"color_jitter": -0.1}, "color_jitter"),
    ],
)
def test_bad_transform_arguments_are_refused_with_the_flag_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformArguments(**kwargs)


def test_a_yaml_preset_gives_defaults_and_flags_override_it(tmp_path):
    from flowers_hf.core.cli import parse_args

    preset = tmp_path / "preset.yaml"
    preset.write_text("dataset: synthetic\nsynthetic_num_classes: 7\nmean: [0.1, 0.2, 0.3]\n")
    data, transform = parse_args(
        (DataArguments, TransformArguments), ["--config", str(preset), "--synthetic_num_classes", "9"]
    )
    assert data.dataset == "synthetic"
    assert data.synthetic_num_classes == 9  # the flag wins
    assert transform.mean == [0.1, 0.2, 0.3]
    (plain,) = parse_args((DataArguments,), [])
    assert plain == DataArguments()


def test_a_preset_with_an_unknown_key_or_no_file_is_refused(tmp_path):
    from flowers_hf.core.cli import parse_args

    preset = tmp_path / "typo.yaml"
    preset.write_text("datset: synthetic\n")
    with pytest.raises(ValueError, match="unknown argument"):
        parse_args((DataArguments,), ["--config", str(preset)])
    with pytest.raises(FileNotFoundError, match="no such file"):
        parse_args((DataArguments,), ["--config", str(tmp_path / "missing.yaml")])
