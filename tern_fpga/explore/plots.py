"""Benchmark plots: a weight-bandwidth roofline and a speed-versus-energy Pareto chart.

Both take plain data (:class:`SystemPoint`, a mapping of models to bytes per token) and write a
PNG with matplotlib's Agg backend, so they run on machines without a display. Every point keeps
its figure label (measured, projected, ...) in its marker, so a projection never looks like a
measurement.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot  # after use(): the backend must be chosen first

from tern_fpga.explore.report import LABELS

__all__ = ["SystemPoint", "pareto", "pareto_front", "roofline"]

# Filled markers for what was observed, open ones for what was computed.
_MARKERS = {"measured": ("o", True), "simulated": ("^", True), "projected": ("s", False),
            "estimated": ("D", False)}


@dataclasses.dataclass(frozen=True)
class SystemPoint:
    """One system (a board, a CPU, a GPU) running one model.

    Parameters
    ----------
    name : str
        Shown next to the point.
    label : str
        How ``tokens_per_s`` was obtained: one of :data:`tern_fpga.explore.report.LABELS`.
    tokens_per_s : float
        Decode speed, batch 1.
    bandwidth : float or None
        Weight bandwidth available to the system, bytes per second (roofline's x).
    tokens_per_joule : float or None
        Energy efficiency (Pareto chart's y).
    """

    name: str
    label: str
    tokens_per_s: float
    bandwidth: float | None = None
    tokens_per_joule: float | None = None

    def __post_init__(self):
        if self.label not in LABELS:
            raise ValueError(f"point {self.name}: label must be one of {', '.join(LABELS)}, "
                             f"not {self.label!r}")
        for field in ("tokens_per_s", "bandwidth", "tokens_per_joule"):
            value = getattr(self, field)
            if value is not None and not value > 0:
                raise ValueError(f"point {self.name}: {field} must be positive on a log axis, "
                                 f"not {value!r}")


# A label is left out when an earlier-labelled point lies closer than this on the log axes
# (decades in x, in y): crowded clusters such as the sweep's points get one label, not a smudge.
_LABEL_SPACING = (0.35, 0.12)


def _family(point) -> str:
    """What a point's colour says: the figure family before its first dot (sweep, power,
    gpu_baseline, anchors, ...)."""
    return point.name.split(".", 1)[0]


def _scatter(axes, points, xs, ys, first=()):
    """Points with the marker of their label and the colour of their family, one legend entry
    per label and per family present; names of the points in ``first`` are placed first, then
    the others where they do not crowd a placed one (:data:`_LABEL_SPACING`)."""
    families = sorted({_family(point) for point in points})
    colours = {family: pyplot.get_cmap("tab10")(number % 10)
               for number, family in enumerate(families)}
    for point, x, y in zip(points, xs, ys):
        marker, filled = _MARKERS[point.label]
        colour = colours[_family(point)]
        axes.scatter([x], [y], marker=marker, s=60, zorder=3, edgecolors=colour,
                     facecolors=colour if filled else "white", linewidths=1.5)
    placed = []
    # names of the rightmost points go to their left, so they stay inside the axes
    low, high = math.log10(min(xs)), math.log10(max(xs))
    ranked = sorted(zip(points, xs, ys), key=lambda item: item[0] not in first)
    for point, x, y in ranked:
        where = (math.log10(x), math.log10(y))
        if any(abs(where[0] - other[0]) < _LABEL_SPACING[0] and
               abs(where[1] - other[1]) < _LABEL_SPACING[1] for other in placed):
            continue
        placed.append(where)
        left = high > low and where[0] > low + 0.9 * (high - low)
        axes.annotate(point.name, (x, y), fontsize=7, xytext=(-5 if left else 5, 4),
                      textcoords="offset points", ha="right" if left else "left")
    for label, (marker, filled) in _MARKERS.items():
        if any(point.label == label for point in points):
            axes.scatter([], [], marker=marker, edgecolors="black",
                         facecolors="black" if filled else "white", label=label)
    for family in families:
        axes.plot([], [], color=colours[family], linewidth=6, label=family)  # a colour swatch


def _save(figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return path


def roofline(path, models: dict[str, float], systems: list[SystemPoint],
             title: str = "Decode speed against weight bandwidth") -> Path:
    """Write a log-log roofline: for each model the line ``tokens/s = bandwidth /
    bytes_per_token`` (the speed if weights were the only traffic), and each system's point at
    its weight bandwidth.

    Parameters
    ----------
    path : str or os.PathLike
        The PNG to write.
    models : dict of str to float
        Model name to weight bytes read per token.
    systems : list of SystemPoint
        Points with ``bandwidth`` set; others are ignored.
    """
    placed = [point for point in systems if point.bandwidth is not None]
    if not models and not placed:
        raise ValueError("a roofline needs at least one model or one system with a bandwidth")
    bandwidths = [point.bandwidth for point in placed] or [1e6, 1e11]
    low, high = min(bandwidths) / 10, max(bandwidths) * 10
    figure, axes = pyplot.subplots(figsize=(7, 5))
    for name, bytes_per_token in sorted(models.items(), key=lambda item: item[1]):
        if not bytes_per_token > 0:
            raise ValueError(f"model {name}: bytes per token must be positive, "
                             f"not {bytes_per_token!r}")
        axes.plot([low, high], [low / bytes_per_token, high / bytes_per_token],
                  linewidth=1, label=f"{name}: {bytes_per_token:,.0f} B/token")
    _scatter(axes, placed, [point.bandwidth for point in placed],
             [point.tokens_per_s for point in placed])
    axes.set(xscale="log", yscale="log", xlabel="weight bandwidth (bytes/s)",
             ylabel="tokens/s (batch 1)", title=title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def pareto_front(points: list[SystemPoint]) -> list[SystemPoint]:
    """The points that no other point beats in both tokens/s and tokens per joule, sorted by
    tokens/s; points without ``tokens_per_joule`` are left out."""
    rated = [point for point in points if point.tokens_per_joule is not None]
    front = [point for point in rated if not any(
        other.tokens_per_s >= point.tokens_per_s and
        other.tokens_per_joule >= point.tokens_per_joule and
        (other.tokens_per_s, other.tokens_per_joule) != (point.tokens_per_s,
                                                         point.tokens_per_joule)
        for other in rated)]
    return sorted(front, key=lambda point: point.tokens_per_s)


def pareto(path, systems: list[SystemPoint],
           title: str = "Speed against energy efficiency") -> Path:
    """Write a log-log chart of tokens/s against tokens per joule, with the Pareto front (the
    points nothing beats on both axes) joined and ringed.

    Parameters
    ----------
    path : str or os.PathLike
        The PNG to write.
    systems : list of SystemPoint
        Points with ``tokens_per_joule`` set; others are ignored.
    """
    rated = [point for point in systems if point.tokens_per_joule is not None]
    if not rated:
        raise ValueError("a Pareto chart needs at least one system with tokens_per_joule")
    figure, axes = pyplot.subplots(figsize=(7, 5))
    front = pareto_front(rated)
    axes.plot([point.tokens_per_s for point in front],
              [point.tokens_per_joule for point in front], color="tab:red", linewidth=1.5,
              zorder=2, label="Pareto front")
    axes.scatter([point.tokens_per_s for point in front],
                 [point.tokens_per_joule for point in front], s=200, facecolors="none",
                 edgecolors="tab:red", zorder=2)
    _scatter(axes, rated, [point.tokens_per_s for point in rated],
             [point.tokens_per_joule for point in rated], first=front)
    axes.set(xscale="log", yscale="log", xlabel="tokens/s (batch 1)", ylabel="tokens per joule",
             title=title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)
