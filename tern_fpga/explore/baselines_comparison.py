"""The FPGA against the strongest baseline of each kind: one side-by-side table per model.

Made by :func:`tern_fpga.explore.bench.run_bench` from all the figures of a report (providers
and merged measurements), so it always uses the fastest GPU and CPU decode the report holds,
whatever produced it. "Strongest" is the highest batch-1 tokens/s among the figures of that kind
for that model preset:

- GPU: ``gpu_baseline.<preset>.<system>.tokens_per_s`` whose system has no ``_b<N>`` batch
  suffix (the batch sweep answers another question: many streams at once);
- CPU: ``cpu_baseline.<preset>.<system>`` and ``h200_host_cpu.<preset>.<system>``, except the
  golden model (a bit-exact simulator of the accelerator, not a way to serve the model);
- FPGA: ``power.<board>.<preset>`` of the ULX3S (tokens/s projected from simulated cycles at the
  bitstream's clock; tokens/J over the FPGA alone and, where the report has it, over the board).

The ratios are FPGA over baseline: above 1 the FPGA is ahead. Every ratio involving a projected
or estimated figure is itself *projected*.
"""

from __future__ import annotations

import re

from tern_fpga.explore.report import Figure, format_value

__all__ = ["FPGA_BOARD", "comparison", "strongest"]

SOURCE = "tern_fpga.explore.baselines_comparison"
FPGA_BOARD = "ulx3s-85f"
PRESETS = ("demo", "micro")
_BATCHED = re.compile(r"_b\d+$")


def _by_name(figures) -> dict[str, Figure]:
    return {figure.name: figure for figure in figures if not isinstance(figure.value, str)}


def strongest(figures, sections, preset: str, exclude=()) -> tuple[str, Figure] | None:
    """``(system prefix, its tokens/s figure)`` with the highest batch-1 tokens/s among
    ``<section>.<preset>.<system>.tokens_per_s`` for the given sections, ``None`` if none."""
    best = None
    for name, figure in _by_name(figures).items():
        parts = name.split(".")
        if (len(parts) != 4 or parts[0] not in sections or parts[1] != preset
                or parts[3] != "tokens_per_s" or _BATCHED.search(parts[2])
                or parts[2] in exclude):
            continue
        if best is None or figure.value > best[1].value:
            best = (name.removesuffix(".tokens_per_s"), figure)
    return best


def _row(label: str, prefix: str | None, speed: Figure | None, efficiency: Figure | None):
    return label, prefix, speed, efficiency


def comparison(figures) -> tuple[list[Figure], str]:
    """Figures ``comparison.<preset>.fpga_over_<kind>.{tokens_per_s,tokens_per_joule}_ratio``
    and the Markdown of the side-by-side tables (empty if the report has no FPGA figures)."""
    named = _by_name(figures)
    out, blocks = [], []
    for preset in PRESETS:
        fpga = f"power.{FPGA_BOARD}.{preset}"
        if f"{fpga}.tokens_per_s" not in named:
            continue
        rows = [_row("FPGA alone (ULX3S, ECP5-85F)", fpga, named.get(f"{fpga}.tokens_per_s"),
                     named.get(f"{fpga}.tokens_per_joule"))]
        if f"{fpga}.board_tokens_per_joule" in named:
            rows.append(_row("ULX3S board", fpga, named[f"{fpga}.tokens_per_s"],
                             named[f"{fpga}.board_tokens_per_joule"]))
        for kind, sections, exclude in (("gpu", ("gpu_baseline",), ()),
                                        ("cpu", ("cpu_baseline", "h200_host_cpu"),
                                         ("golden",))):
            found = strongest(figures, sections, preset, exclude)
            if found is None:
                continue
            prefix, speed = found
            rows.append(_row(f"strongest {kind.upper()}", prefix, speed,
                             named.get(f"{prefix}.tokens_per_joule")))
            out += _ratios(preset, kind, rows[0], rows[-1])
            if rows[1][0] == "ULX3S board":
                out += _ratios(preset, kind, rows[1], rows[-1], "fpga_board")
        blocks.append(_table(preset, rows))
    if not blocks:
        return out, ""
    text = ["## Comparison: the FPGA against the strongest baseline of each kind", "",
            ("Batch-1 greedy decode of the same model. Strongest = the highest batch-1 tokens/s "
            "of that kind in this report (`tern_fpga.explore.baselines_comparison`); ratios are "
            "FPGA / baseline (above 1: the FPGA is ahead). The FPGA's tokens/s are projected "
            "(simulated cycles at the bitstream's clock) and its watts estimated; no board has "
            "run yet. Tokens/J include idle power (gross) for every system."), ""]
    return out, "\n".join(text + blocks)


def _ratios(preset: str, kind: str, fpga_row, baseline_row, who: str = "fpga"
            ) -> list[Figure]:
    out = []
    quantities = ((2, "tokens_per_s"), (3, "tokens_per_joule")) if who == "fpga" else \
        ((3, "tokens_per_joule"),)
    for index, quantity in quantities:
        fpga, base = fpga_row[index], baseline_row[index]
        if fpga is None or base is None or not base.value:
            continue
        out.append(Figure(
            f"comparison.{preset}.{who}_over_{kind}.{quantity}_ratio", fpga.value / base.value,
            "x", "projected", SOURCE,
            f"{fpga.name} ({format_value(fpga.value)}, {fpga.label}) over "
            f"{base.name} ({format_value(base.value)}, {base.label}, "
            f"{base.machine}): the strongest {kind.upper()} baseline in this report",
            machine=f"{fpga.machine} vs {base.machine}"))
    return out


def _table(preset: str, rows) -> str:
    fpga_speed, fpga_efficiency = rows[0][2], rows[0][3]
    board = next((row[3] for row in rows if row[0] == "ULX3S board"), None)

    def ratio(fpga, other):
        return f"{fpga.value / other.value:.3g}x" if fpga and other and other.value else ""

    lines = [f"### {preset}", "",
             ("| system | figures | tokens/s | tokens/J | FPGA / it, tokens/s | "
             "FPGA / it, tokens/J | ULX3S board / it, tokens/J |"),
             "|---|---|---:|---:|---:|---:|---:|"]
    for label, prefix, speed, efficiency in rows:
        own = label in ("FPGA alone (ULX3S, ECP5-85F)", "ULX3S board")
        lines.append(
            f"| {label} | `{prefix}` ({speed.label if speed else '-'}, "
            f"{speed.machine if speed else '-'}) | "
            f"{format_value(speed.value) if speed else '-'} | "
            f"{format_value(efficiency.value) if efficiency else 'not measured'} | "
            f"{'' if own else ratio(fpga_speed, speed)} | "
            f"{'' if own else ratio(fpga_efficiency, efficiency)} | "
            f"{'' if own else ratio(board, efficiency)} |")
    return "\n".join(lines + [""])
