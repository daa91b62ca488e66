"""Run taskkit's benchmarks: ``python -m benchmarks [AREA ...] [--repeats N]``.

Each ``bench_<area>.py`` module beside this file defines ``main(repeats: int) -> None``,
which times taskkit and its peers in the same process run and prints ratios.
Peers (loky, pebble, mpire, ...) are installed with ``pip install -e ".[bench]"``;
a peer that is missing is skipped with a note, never faked.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path


def main() -> None:
    areas = sorted(
        info.name.removeprefix("bench_")
        for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if info.name.startswith("bench_")
    )
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "areas", nargs="*", help=f"areas to run (default: all of {', '.join(areas)})"
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (median)")
    args = parser.parse_args()
    unknown = sorted(set(args.areas) - set(areas))
    if unknown:
        parser.error(f"unknown area(s) {unknown}; choose from {areas}")
    for area in args.areas or areas:
        module = importlib.import_module(f"benchmarks.bench_{area}")
        module.main(args.repeats)


if __name__ == "__main__":
    main()
