"""The `hf-qkdelay` console command.

Each subcommand lives in its own module under `hf_qkdelay.commands` and exposes
`register(subparsers)`, which adds its parser and sets `func` to the function that runs it.
Modules are imported lazily so that `hf-qkdelay --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Subcommand name -> module under hf_qkdelay.commands.
SUBCOMMANDS = {
    "eval": "evaluate",
    "compare": "compare",
    "plot": "plot",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-qkdelay",
        description="Upper-layer Q/K learning-rate delay: evaluation, comparison and plots.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in SUBCOMMANDS.values():
        module = importlib.import_module(f"hf_qkdelay.commands.{module_name}")
        module.register(subparsers)
    return parser


# Set to 1 to see the full traceback of an error in what the user gave (argument, path).
TRACEBACK_ENV = "HF_QKDELAY_TRACEBACK"
# Exit status of a usage error, as argparse uses for a bad flag.
USAGE_ERROR_STATUS = 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        # The library raises these for what the user gave (a bad value, a missing folder), and
        # their message already names the argument and the fix: a traceback only buries it.
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR_STATUS


if __name__ == "__main__":
    sys.exit(main())
