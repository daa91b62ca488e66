"""``python -m taskkit``: the tour, what this installation offers, and ``map`` for the shell."""

from __future__ import annotations

import argparse
import sys

from ._cli import add_map_parser
from ._cli import run as run_map


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskkit", description="taskkit: one Executor interface, many backends."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("tour", help="run the tutorial's scenarios and measure the backends")
    commands.add_parser("backends", help="list the backends and whether each is available here")
    map_parser = add_map_parser(commands)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["map"]:
        # Intermixed, so that options may follow the inputs (argparse's subparsers cannot).
        args = map_parser.parse_intermixed_args(argv[1:])
    else:
        args = parser.parse_args(argv)
    if args.command == "map":
        return run_map(args)
    if args.command == "tour":
        from ._tour import main as tour

        tour()
    else:
        import taskkit
        from taskkit._backends import backend_class

        for name, why in taskkit.BACKENDS.items():
            try:
                backend_class(name)
                state = "available"
            except taskkit.BackendUnavailable as exc:
                state = f"unavailable: {exc}"
            print(f"{name:<10} {why} ({state})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
