"""Publish to the Hugging Face Hub from the command line.

    python -m flowers_hf.push push RUN_DIR --repo USER/NAME                 # a finished run, as a model repo
    python -m flowers_hf.push push-space --repo USER/SPACE --model USER/NAME  # demo/ as a Gradio Space

The token comes from HF_TOKEN or the login cache (`hf auth login`); it is never logged or written anywhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowers_hf.core.cli import run_cli, setup_logging
from flowers_hf.reporting.publish import check_push_access, push_model, push_space


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flowers_hf.push", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    push = commands.add_parser("push", help="Publish a finished run folder as a model repository.")
    push.add_argument("run_dir", type=Path, help="The run's output folder (train.py --output_dir).")
    space = commands.add_parser("push-space", help="Publish demo/ as a Gradio Space serving a Hub model.")
    space.add_argument("--model", required=True, help="The model repository the Space serves, OWNER/NAME.")
    for command in (push, space):
        command.add_argument("--repo", required=True, help="The repository to create or update, OWNER/NAME.")
        command.add_argument("--private", action="store_true", help="Create the repository as private.")
    args = parser.parse_args(argv)
    setup_logging()
    check_push_access(args.repo)
    if args.command == "push":
        url = push_model(args.run_dir, args.repo, private=args.private)
    else:
        url = push_space(args.repo, args.model, private=args.private)
    print(url)


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
