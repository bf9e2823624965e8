"""The `greenmodel` command line: one sub-command per module in this package.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module
adds its parser and sets ``func`` (a callable taking the parsed args, returning an exit code).
Sub-command modules are imported only when present, so a partial install still runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from greenmodel import __version__

# Order is the order `greenmodel --help` lists them.
SUBCOMMANDS = ("run", "plan", "bench", "report", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenmodel",
        description="greenmodel-operator: serve LLMs on Kubernetes GPUs with the least energy "
        "and carbon that still meets the quality floor and the latency SLO.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"greenmodel.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"greenmodel.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
