"""Print a JSON summary of a data source: ``python -m flowers_hf.data SOURCE [--synthetic_num_classes N …]``.

Examples:
    python -m flowers_hf.data synthetic
    python -m flowers_hf.data /data/oxford-flowers          # imagelabels.mat, setid.mat, jpg/ or 102flowers.tgz
    python -m flowers_hf.data Donghyun99/Oxford-Flower-102   # the default copy, at its pinned commit
    python -m flowers_hf.data data/digits                    # an imagefolder tree train/<class>/…: its own names
    python -m flowers_hf.data --config configs/synthetic_photos.yaml
"""

from __future__ import annotations

import json
import sys

from flowers_hf.core.cli import parse_args, run_cli, setup_logging
from flowers_hf.data.arguments import DataArguments
from flowers_hf.data.load import load_data, summarize


def main(argv: list[str]) -> None:
    setup_logging()
    # The source may come first as a positional argument, as in `python -m flowers_hf.data synthetic`.
    if argv and not argv[0].startswith("-"):
        argv = ["--dataset", argv[0], *argv[1:]]
    (args,) = parse_args((DataArguments,), argv, prog="python -m flowers_hf.data")
    data = load_data(args=args).splits
    print(json.dumps(summarize(data, args.dataset)))


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
