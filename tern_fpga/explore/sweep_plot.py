"""The sweep's picture: tokens/s against tokens per joule, one marker per board, one colour
per model, each model's Pareto front of fitting points joined."""

from __future__ import annotations

from pathlib import Path

from tern_fpga.contracts.boards import BOARDS

__all__ = ["fitting_front", "plot"]

# Colours of the models, in the order the sweep lists them.
MODEL_COLOURS = {"micro": "tab:blue", "demo": "tab:orange"}

def fitting_front(points: list) -> list:
    """The points that fit their board and that no other fitting point beats in both tokens/s
    and tokens per joule, by tokens/s (:func:`tern_fpga.explore.plots.pareto_front`)."""
    # here, not at the top: loads matplotlib
    from tern_fpga.explore.plots import SystemPoint, pareto_front

    fitting = {point.prefix + f".{index}": point for index, point in enumerate(points)
               if point.values.get("fits") == "yes" and "tokens_per_joule" in point.values}
    front = pareto_front([SystemPoint(name, "projected", point.values["tokens_per_s"],
                                      tokens_per_joule=point.values["tokens_per_joule"])
                          for name, point in fitting.items()])
    return [fitting[system.name] for system in front]


def plot(path, points: list) -> Path | None:
    """tokens/s against tokens per joule (log-log): one marker per board, one colour per model,
    filled where the point fits, open where it does not, ``P`` beside each point, and each
    model's Pareto front of its fitting points joined. Not drawn (None) without a point that
    has both numbers."""
    from tern_fpga.explore.plots import pyplot  # here, not at the top: loads matplotlib

    rated = [point for point in points if "tokens_per_joule" in point.values]
    if not rated:
        return None
    markers = dict(zip(BOARDS, ("o", "s", "^", "D")))
    colours = MODEL_COLOURS
    figure, axes = pyplot.subplots(figsize=(8, 5.5))
    for index, point in enumerate(rated):
        x, y = point.values["tokens_per_s"], point.values["tokens_per_joule"]
        colour = colours.get(point.preset, "black")
        fitting = point.values.get("fits") == "yes"
        axes.scatter([x], [y], marker=markers[point.board], s=60, zorder=3,
                     edgecolors=colour, facecolors=colour if fitting else "white")
        axes.annotate(f"P{point.lanes}", (x, y), fontsize=7, textcoords="offset points",
                      xytext=(5, 4 if index % 2 else -9))  # alternate: neighbours overlap
    # A token of one model is not a token of another: one front per model.
    for name, colour in colours.items():
        front = fitting_front([point for point in rated if point.preset == name])
        if front:
            xs = [p.values["tokens_per_s"] for p in front]
            ys = [p.values["tokens_per_joule"] for p in front]
            axes.plot(xs, ys, color=colour, linewidth=1.2, zorder=2)
            axes.scatter(xs, ys, s=220, facecolors="none", edgecolors=colour, zorder=2,
                         label=f"{name}: Pareto front of the fitting points (ringed)")
    for board, marker in markers.items():
        if any(point.board == board for point in rated):
            axes.scatter([], [], marker=marker, edgecolors="black", facecolors="white",
                         label=board)
    for name, colour in colours.items():
        axes.scatter([], [], marker="o", color=colour, label=f"{name} model (filled: fits)")
    axes.set(xscale="log", yscale="log", xlabel="tokens/s (projected)",
             ylabel="tokens per joule (projected)",
             title="Design-space sweep: lanes P x model x board")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return path
