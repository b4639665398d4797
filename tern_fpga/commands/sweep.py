"""``tern sweep``: the design-space sweep as a table and a plot (see
:mod:`tern_fpga.explore.sweep`)."""

from __future__ import annotations

from tern_fpga.contracts.output_paths import PNG, add_force_argument, check_output_file
from tern_fpga.explore import sweep


def register(subparsers):
    parser = subparsers.add_parser(
        "sweep", help="lanes x model x board: utilisation, Fmax, tokens/s, tokens/J",
        description="Evaluate every design point (ternary lanes P x model preset x board): "
                    "utilisation from Yosys, Fmax, cycles per token (Verilator or the cycle "
                    "model), projected tokens/s and tokens per joule, and whether it fits. "
                    "Prints a Markdown table (labels: m measured, s simulated, p projected, "
                    "e estimated) and writes the plot. Syntheses and simulations are cached "
                    "in build/sweep/; the first full run takes a long while.")
    parser.add_argument("--quick", action="store_true",
                        help="three (model, P) pairs, the cycle model, and only cached "
                             "syntheses")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="where to write the plot (default: bench/sweep.png)")
    add_force_argument(parser, "an existing --plot file that is not a PNG image")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.plot is None:
        sweep.PLOT.parent.mkdir(parents=True, exist_ok=True)  # the default's folder is ours
    plot = check_output_file(args.plot or sweep.PLOT, PNG, force=args.force, option="--plot")
    points, simulated = sweep.sweep(args.quick)
    print(sweep.table(points), end="")
    for (name, lanes), error in sorted(sweep.model_errors(simulated).items()):
        print(f"cycle model against Verilator, {name} P={lanes}: {100 * error:+.3f} %")
    written = sweep.plot(plot, points)
    print(f"wrote {written}" if written else "no plot: no point has tokens/s and tokens/J")
    return 0
