"""The command-line arguments of ``bench/run.py`` (``BenchArguments``, shared by its helpers), of ``bench/load.py``
(``LoadArguments``, shared by the soak and the batching comparison), of ``bench/explain.py`` and of
``bench/distill.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlparse

import torch

# Per mode: the models and what differs from the full run. Quick keeps the code path and scales the images down
# together (crop 128 px from 288 px JPEGs, as 224 from 500), so that decoding and augmenting weigh against the model
# about as at full size.
QUICK = {
    "models": ["resnet18"],
    "image_size": 128,
    "source_image_size": 288,
    "num_classes": 20,
    "warmup_steps": 2,
    "steps": 10,
    "infer_runs": 30,
}
FULL = {"models": ["resnet18", "efficientnet_b3"], "source_image_size": 500, "num_classes": 102, "infer_runs": 50}
# Steady-state steps per model in the full run: EfficientNet-B3 takes ~20 s per step of 32 on 2 CPU cores.
FULL_STEPS = {"resnet18": 20, "efficientnet_b3": 6}
WARMUP_STEPS, WARMUP_STEPS_GPU = 3, 10
# A GPU step takes milliseconds: enough steps for a window of seconds and for the data path to reach steady state.
FULL_STEPS_GPU = 200

# bench/load.py: the hosts --soak accepts, and the defaults of --soak and --compare_batching.
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SOAK_CLIENTS, SOAK_TOTAL = 20, 1000
COMPARE_CLIENTS, COMPARE_REQUESTS = 20, 10


@dataclass
class BenchArguments:
    """What to measure, on which data and device. Unset fields take the ``--quick`` or full run's values."""

    quick: bool = field(
        default=False, metadata={"help": "ResNet18 on smaller images, fewer steps: < 5 min on 2 cores."}
    )
    models: list[str] | None = field(
        default=None,
        metadata={"help": "timm architectures (full run: resnet18 efficientnet_b3; quick: resnet18); none: no model."},
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Model input size (default: the model's own; quick: 128)."}
    )
    source_image_size: int | None = field(
        default=None, metadata={"help": "Shorter side of the synthetic JPEGs (full: 500 like Flowers-102; quick: 288)."}
    )
    num_classes: int | None = field(default=None, metadata={"help": "Synthetic classes (full: 102; quick: 20)."})
    images_per_class: int = field(
        default=10, metadata={"help": "Synthetic images per class; every split is used for training (102 x 10: 1,020)."}
    )
    batch_size: int = field(default=32, metadata={"help": "Training batch size of every training path."})
    workers: int | None = field(
        default=None,
        metadata={"help": "DataLoader workers of our path (default: FlowersTrainingArguments', min(8, cores))."},
    )
    warmup_steps: int | None = field(
        default=None, metadata={"help": "Training steps run before timing starts (CPU: 3; GPU: 10; quick: 2)."}
    )
    steps: int | None = field(
        default=None,
        metadata={"help": "Timed training steps (full CPU: resnet18 20, efficientnet_b3 6; GPU: 200; quick: 10)."},
    )
    rounds: int = field(
        default=1, metadata={"help": "Repeat the training measurements, interleaved, and take the medians."}
    )
    infer_runs: int | None = field(default=None, metadata={"help": "Timed predictions (full: 50; quick: 30)."})
    phone_side: int = field(
        default=4000,
        metadata={"help": "Longer side of the phone JPEG the demo is also timed on (4:3; 4000: 12 megapixels)."},
    )
    device: str = field(
        default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "cpu or cuda (default: cuda if any)."}
    )
    precision: str = field(default="fp32", metadata={"help": "fp32, bf16 or fp16 (CUDA only), for training."})
    channels_last: bool = field(default=False, metadata={"help": "Model (and ceiling batches) in channels_last."})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model in every training path."})
    compile_backend: str = field(
        default="inductor",
        metadata={"help": "torch.compile's backend for our path (bench/compile.py); aot_eager traces without codegen."},
    )
    recipes: bool = field(
        default=False, metadata={"help": "Also time the two reference recipes with train.py (hours on a CPU)."}
    )
    recipe_flags: str = field(
        default="",
        metadata={"help": "More train.py flags for the recipes, e.g. '--max_steps 2 --image_size 32' for a dry run."},
    )
    probe: bool = field(
        default=False,
        metadata={
            "help": "Also time the ResNet18 linear probe (configs/resnet18.yaml, 20 epochs) with train.py, on the "
            "frozen backbone's features and on the whole model every time, side by side (bench/probe.py)."
        },
    )
    probe_backbone: str | None = field(
        default=None,
        metadata={"help": "The probe's starting weights (a model.safetensors; default: train the quickstart's)."},
    )
    probe_images_per_class: int = field(
        default=16, metadata={"help": "The probe's synthetic images per class (16: 204 / 204 / 1,224 images)."}
    )
    probe_flags: str = field(
        default="", metadata={"help": "More train.py flags for both probe runs, e.g. '--num_train_epochs 2'."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where datasets caches the synthetic images."})
    onnx: bool = field(
        default=True,
        metadata={
            "help": "Also time the demo on the model's ONNX exports, fp32 and int8 (CPU only; python -m "
            "flowers_hf.export's code, int8 calibrated on validation photos)."
        },
    )
    json_only: bool = field(default=False, metadata={"help": "Print only the JSON (used for one model per process)."})

    def __post_init__(self) -> None:
        mode = QUICK if self.quick else FULL
        for key, value in mode.items():
            if getattr(self, key, None) is None:
                setattr(self, key, value)
        if self.warmup_steps is None:
            self.warmup_steps = WARMUP_STEPS_GPU if self.device == "cuda" else WARMUP_STEPS
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"--precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.device not in ("cpu", "cuda") or (self.device == "cuda" and not torch.cuda.is_available()):
            raise ValueError(f"--device must be cpu or cuda (with a CUDA GPU present), got {self.device!r}")
        if self.precision == "fp16" and self.device != "cuda":
            raise ValueError("--precision fp16 needs --device cuda; use bf16 or fp32 on a CPU")
        if min(self.batch_size, self.warmup_steps, self.rounds, self.infer_runs, self.images_per_class - 2) < 1:
            raise ValueError(
                "--batch_size, --warmup_steps, --rounds and --infer_runs must be positive, "
                "--images_per_class at least 3"
            )
        if self.phone_side < 8:
            raise ValueError(f"--phone_side must be at least 8 (pixels), got {self.phone_side}")

    def steps_for(self, model: str) -> int:
        """Timed steps for ``model``: ``--steps``, else the mode's default."""
        if self.steps is not None:
            return self.steps
        return FULL_STEPS_GPU if self.device == "cuda" else FULL_STEPS.get(model, 10)


@dataclass
class LoadArguments:
    """Which demo to load, with how many clients and requests."""

    url: str | None = field(default=None, metadata={"help": "A running demo, e.g. http://127.0.0.1:7860/."})
    model: str | None = field(
        default=None, metadata={"help": "Or a run folder (or Hub id): demo/app.py is started on it for the run."}
    )
    make_model: str | None = field(
        default=None,
        metadata={"help": "Or a timm architecture (resnet18): an untrained model of it at --image_size is served."},
    )
    image_size: int = field(default=224, metadata={"help": "The input size of the --make_model model."})
    image: str | None = field(default=None, metadata={"help": "The photo to send (default: a generated JPEG)."})
    clients: int | None = field(
        default=None, metadata={"help": "Concurrent clients, one thread each (default 10; 20 with --soak or "
                                "--compare_batching)."}
    )  # fmt: skip
    requests: int | None = field(
        default=None, metadata={"help": "Requests per client, sent one after another (default 5; with --soak 1,000 "
                                "in all; with --compare_batching 10)."}
    )  # fmt: skip
    timeout: float = field(default=120.0, metadata={"help": "Seconds a request may wait before it counts as lost."})
    soak: bool = field(
        default=False, metadata={"help": "Latency per quarter of the requests and the demo's memory (loopback only)."}
    )
    max_s: float = field(default=900.0, metadata={"help": "With --soak: no request is sent after this many seconds."})
    pid: int | None = field(default=None, metadata={"help": "With --url: the demo's process id, for its memory."})
    compare_batching: bool = field(
        default=False, metadata={"help": "Serve --model twice, --max_batch_size 1 and the default; compare them."}
    )
    rounds: int = field(default=2, metadata={"help": "With --compare_batching: loaded runs of each, in turn."})
    alone_requests: int = field(
        default=20, metadata={"help": "With --compare_batching: requests of one client alone, in each mode."}
    )

    def __post_init__(self) -> None:
        if sum(option is not None for option in (self.url, self.model, self.make_model)) != 1:
            raise ValueError("give one of --url of a running demo, --model or --make_model to start one")
        if self.compare_batching and self.url is not None:
            raise ValueError("--compare_batching starts the demo itself: give --model or --make_model")
        if self.soak and self.url is not None and urlparse(self.url).hostname not in LOOPBACK:
            raise ValueError(f"--soak loads a demo on this machine only (127.0.0.1), not {self.url}")
        if self.clients is None:
            self.clients = SOAK_CLIENTS if self.soak else COMPARE_CLIENTS if self.compare_batching else 10
        if self.requests is None:
            self.requests = -(-SOAK_TOTAL // self.clients) if self.soak else 10 if self.compare_batching else 5
        if min(self.clients, self.requests, self.rounds, self.alone_requests) < 1 or self.max_s <= 0:
            raise ValueError("--clients, --requests, --rounds and --alone_requests must be at least 1, --max_s above 0")


@dataclass
class ExplainBenchArguments:
    """The model to time, and how often."""

    model: str | None = field(default=None, metadata={"help": "A run folder or Hub id; default: --architecture."})
    architecture: str = field(default="resnet18", metadata={"help": "A timm model, random init, 102 classes."})
    image_size: int | None = field(default=None, metadata={"help": "Its input size; default: the model's own."})
    runs: int = field(default=40, metadata={"help": "Timed rounds, after 5 untimed ones."})


@dataclass
class DistillBenchArguments:
    """The teacher, the student and their budgets (``bench/distill.py``)."""

    output_dir: str = field(default="runs/bench_distill", metadata={"help": "Where the runs go (reused if there)."})
    num_classes: int = field(default=102, metadata={"help": "Synthetic classes (80 images each: 10 / 10 / 60)."})
    teacher_epochs: float = field(default=24, metadata={"help": "The teacher's epochs (ResNet18 at 64 px)."})
    student_model: str = field(default="resnet10t", metadata={"help": "The student's timm architecture."})
    student_epochs: float = field(default=8, metadata={"help": "Each student's epochs, with and without the teacher."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "One pair of students per seed."})
    alpha: float = field(default=0.5, metadata={"help": "--distill_alpha of the distilled students."})
    temperature: float = field(default=4.0, metadata={"help": "--distill_temperature of the distilled students."})
    export_eval_samples: int = field(
        default=300, metadata={"help": "Test images the int8 exports are compared on (python -m flowers_hf.export)."}
    )
    rounds: int = field(default=50, metadata={"help": "Timed int8 predictions per model, after 5 untimed ones."})


@dataclass
class FidelityArguments:
    """Which model to ask, about how many photos, in which file formats."""

    model: str | None = field(default=None, metadata={"help": "A run folder or Hub id; default: --architecture."})
    architecture: str = field(default="resnet18", metadata={"help": "A timm model, random init, 102 classes."})
    image_size: int | None = field(default=None, metadata={"help": "Its input size; default 224."})
    photos: int = field(default=12, metadata={"help": "Synthetic flowers, besides scikit-learn's two photographs."})
    side: int = field(default=4000, metadata={"help": "The photos' longer side (4:3; 4000: 12 megapixels)."})
    formats: list[str] = field(
        default_factory=lambda: ["jpeg", "png"], metadata={"help": "File formats of each photo: jpeg, png, webp."}
    )

    def __post_init__(self) -> None:
        if self.photos < 0 or self.side < 8 or not self.formats or not set(self.formats) <= {"jpeg", "png", "webp"}:
            raise ValueError("--photos must be at least 0, --side at least 8, --formats some of jpeg, png, webp")
