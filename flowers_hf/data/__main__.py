"""Print a JSON summary of a data source: ``python -m flowers_hf.data SOURCE [--synthetic_num_classes N …]``.

Examples:
    python -m flowers_hf.data synthetic
    python -m flowers_hf.data /data/oxford-flowers          # imagelabels.mat, setid.mat, jpg/ or 102flowers.tgz
    python -m flowers_hf.data dpdl-benchmark/oxford_flowers102
    python -m flowers_hf.data --config configs/synthetic_photos.yaml
"""

from __future__ import annotations

import json
import logging
import sys

from ..cli import parse_args
from ..config import DataArguments
from .load import load_flowers, summarize


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    # The source may come first as a positional argument, as in `python -m flowers_hf.data synthetic`.
    if argv and not argv[0].startswith("-"):
        argv = ["--dataset", argv[0], *argv[1:]]
    try:
        (args,) = parse_args((DataArguments,), argv, prog="python -m flowers_hf.data")
        data = load_flowers(args=args)
    except (OSError, ValueError, KeyError) as error:
        logging.getLogger("flowers_hf").error("%s", error)
        return 1
    print(json.dumps(summarize(data, args.dataset)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
