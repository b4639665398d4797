"""``tern bench``: run the benchmarks and write a labelled report (see
:mod:`tern_fpga.explore.bench`)."""

from __future__ import annotations

import sys

from tern_fpga.contracts import paths
from tern_fpga.contracts.output_paths import (
    PNG,
    OutputKind,
    add_force_argument,
    check_output_folder,
)
from tern_fpga.explore.bench import run_bench

# Measurements made elsewhere (the GPU baseline on the H200), committed in bench/measured/.
MEASURED = paths.BENCH / "measured" if paths.BENCH else None
# What a run writes into -o DIR, and how an earlier run's file is recognised.
OUTPUTS = {
    "report.json": OutputKind.json_with_keys("a tern bench report", ("metadata", "figures")),
    "report.md": OutputKind.starting_with("a tern bench report", b"# tern benchmark report"),
    "roofline.png": PNG, "pareto.png": PNG, "sweep.png": PNG,
}


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true",
                        help="shorter runs (a few seconds per provider), for a smoke test")
    parser.add_argument("-o", "--output", default="bench", metavar="DIR",
                        help="folder for report.md, report.json and plots (default: bench)")
    parser.add_argument("--provider", action="append", metavar="MODULE[:FUNCTION]",
                        help="run only this provider (repeatable; default: all of "
                             "tern_fpga.explore.bench.PROVIDERS)")
    parser.add_argument("--merge", action="append", default=[], metavar="FIGURES.json",
                        help="add the figures of a JSON file, e.g. a GPU run of "
                             "`python -m tern_fpga.explore.baselines` (repeatable)")
    add_force_argument(parser, "files in the output folder that an earlier run did not write")
    parser.set_defaults(func=run)


def register(subparsers):
    parser = subparsers.add_parser(
        "bench", help="run the benchmarks and write a labelled report",
        description="Run the benchmark providers (CPU baseline, power meters, hardware units), "
                    "each figure labelled measured, simulated, projected or estimated, and "
                    "write report.md and report.json with roofline and Pareto plots. A "
                    "provider that fails is listed in the report; the others still run.")
    add_arguments(parser)


def run(args) -> int:
    check_output_folder(args.output, OUTPUTS, force=args.force, inputs=args.merge)

    def progress(line: str):
        print(line, flush=True)

    # Measurements made elsewhere (the GPU baseline on the H200) are committed in
    # bench/measured/ and part of the full report (not of a run of chosen providers).
    measured = [] if args.provider or MEASURED is None else \
        sorted(str(path) for path in MEASURED.glob("*.json"))
    json_path, markdown_path, problems = run_bench(
        args.output, quick=args.quick, providers=args.provider, merge=measured + args.merge,
        progress=progress)
    print(f"wrote {markdown_path} and {json_path}")
    failed = [problem.source for problem in problems if problem.kind == "failed"]
    if failed:
        print(f"tern bench: {len(failed)} failed (see the report): {', '.join(failed)}",
              file=sys.stderr)
    return 1 if failed else 0
