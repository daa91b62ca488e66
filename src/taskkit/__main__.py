"""``python -m taskkit``: the tour, and what this installation offers."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskkit", description="taskkit: one Executor interface, many backends."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("tour", help="run the tutorial's scenarios and measure the backends")
    commands.add_parser("backends", help="list the backends and whether each is available here")
    args = parser.parse_args(argv)
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
