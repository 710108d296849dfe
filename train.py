"""Train a timm image classifier with the HF Trainer: Oxford Flowers-102 by default, any data set with --dataset.

    python train.py --config configs/quickstart.yaml                    # offline: synthetic data, random init
    python train.py --config configs/resnet18.yaml                      # ResNet18 linear probe (needs the Hub)
    accelerate launch --config_file accelerate_config.yaml train.py --config configs/efficientnet_b3.yaml
    python train.py --model resnet18 --dataset /data/oxford-flowers102 --output_dir runs/r18 --max_steps 100
    python train.py --config configs/resnet18_finetune.yaml --dataset beans --output_dir runs/beans  # another data set
    python train.py --config configs/resnet18_finetune.yaml --push_to_hub --hub_model_id USER/NAME  # and publish

Every TrainingArguments flag works; flags override the --config preset. Rerunning a command on an output folder
with checkpoints resumes from the last complete one; Ctrl-C writes a checkpoint before it stops. The work is done
in flowers_hf/train.py.
"""

from __future__ import annotations

import sys

from flowers_hf.core.cli import run_cli
from flowers_hf.train import ARGUMENTS, main

__all__ = ["ARGUMENTS", "main"]

if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
