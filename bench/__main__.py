"""`python -m bench [baselines|engine|all]`: measure the baselines, then each figure against its
target scaled by them; print a table and write the figures as JSON under bench/results/."""

from __future__ import annotations

import argparse
import importlib
import sys

from bench import baselines as baselines_module
from bench.common import Figure, machine_facts, print_table, write_results

# Each part is a module `bench.<name>` with `run(base: Baselines) -> list[Figure]`.
PARTS = ("engine", "webhooks", "engine_e2e", "api", "ws", "recovery", "delays", "floor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("part", choices=["baselines", *PARTS, "all"], nargs="?", default="all")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per load run")
    args = parser.parse_args(argv)

    base = baselines_module.measure(args.seconds)
    print_table("baselines", [], base.as_dict())
    figures: list[Figure] = []
    for part in PARTS:
        if args.part in (part, "all"):
            module = importlib.import_module(f"bench.{part}")
            figures.extend(module.run(base))
    if figures:
        print_table(args.part, figures, base.as_dict())
    path = write_results(
        args.part,
        {"machine": machine_facts(), "baselines": base.as_dict(), "figures": figures},
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
