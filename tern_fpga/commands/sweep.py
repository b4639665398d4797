"""``tern sweep``: the design-space sweep as a table and a plot (see
:mod:`tern_fpga.explore.sweep`)."""

from __future__ import annotations

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.output_paths import PNG, add_force_argument, check_output_file
from tern_fpga.explore import sweep
from tern_fpga.explore.sweep_parallel import executor_for


def register(subparsers):
    parser = subparsers.add_parser(
        "sweep", help="lanes x model x board: utilisation, Fmax, tokens/s, tokens/J",
        description="Evaluate every design point (ternary lanes P x model preset x board): "
                    "utilisation from Yosys, Fmax, cycles per token (Verilator or the cycle "
                    "model), projected tokens/s and tokens per joule, and whether it fits. "
                    "Prints a Markdown table (labels: m measured, s simulated, p projected, "
                    "e estimated) and writes the plot. Syntheses and simulations are cached "
                    "in build/sweep/; those missing, and then the points, run in parallel on "
                    "this machine's cores (--workers) or on a Dask cluster (--scheduler). "
                    "The first full run takes a long while.")
    parser.add_argument("--quick", action="store_true",
                        help="three (model, P) pairs, the cycle model, and only cached "
                             "syntheses")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="run the syntheses, simulations and points in N processes on "
                             "this machine (default: one a core; 1: one after another, in "
                             "this process)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run them on the Dask distributed cluster whose scheduler is at "
                             "ADDRESS (tcp://host:8786) instead; the cache stays here, in "
                             "build/sweep/, and the workers need this tern-fpga and its tools "
                             "(docs/sweep.md)")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="where to write the plot (default: bench/sweep.png)")
    add_force_argument(parser, "an existing --plot file that is not a PNG image")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.plot is None:
        sweep.PLOT.parent.mkdir(parents=True, exist_ok=True)  # the default's folder is ours
    plot = check_output_file(args.plot or sweep.PLOT, PNG, force=args.force, option="--plot")
    if args.scheduler and args.workers is not None:
        raise TernError("--workers is for this machine and --scheduler for a cluster (whose "
                        "workers are started with `dask worker`): give one of them")
    with executor_for(args.scheduler, args.workers) as executor:
        points, simulated = sweep.sweep(args.quick, executor)
    print(sweep.table(points), end="")
    for (name, lanes), error in sorted(sweep.model_errors(simulated).items()):
        print(f"cycle model against Verilator, {name} P={lanes}: {100 * error:+.3f} %")
    written = sweep.plot(plot, points)
    print(f"wrote {written}" if written else "no plot: no point has tokens/s and tokens/J")
    return 0
