"""Benchmark figures and the report they make: the one place numbers are labelled and written.

Every number that ``tern bench`` (or any script) publishes is a :class:`Figure` with one of four
labels (:data:`LABELS`) saying how it was obtained. :func:`write_report` writes them as
``report.json`` (machine-readable) and ``report.md`` (one table per top-level section, a legend
of the labels, the problems met, and the PNG plots found in the same folder).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import os
import platform
import re
import subprocess
from pathlib import Path

from tern_fpga.contracts import paths
from tern_fpga.contracts.output_paths import OutputKind, OutputPathError, check_output_file

__all__ = ["FIGURES_FILE", "LABELS", "Figure", "Problem", "figures_output", "format_value",
           "git_commit", "machine_description", "write_report"]

# What a measuring script's -o holds, and `tern bench --merge` reads.
FIGURES_FILE = OutputKind.json_with_keys('a figures file (JSON with "figures")', ("figures",))

# How a number was obtained; the legend of every report explains them in these words.
LABELS = {
    "measured": "observed on real hardware during the run: wall-clock time on the named "
                "machine, samples of a power meter",
    "simulated": "computed by running a model of the hardware (Verilator, the golden model): "
                 "exact for the design as simulated, not observed on a board",
    "projected": "derived from other figures by a formula (cycles per token x clock, scaling "
                 "to another model or board); the notes name the inputs",
    "estimated": "reported by a design tool's analysis or a datasheet rather than observed: "
                 "nextpnr's timing-analysis Fmax, synthesis resource counts, vendor power "
                 "figures",
}

_NAME = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)+")
_REPOSITORY = paths.SOURCE_ROOT


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def machine_description() -> str:
    """A short description of this machine, e.g. ``"AMD EPYC, 2 CPUs, Linux x86_64"``."""
    return f"{_cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}"


def git_commit(repository: Path = _REPOSITORY) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the working tree at
    ``repository`` (``None`` when git or the repository is unavailable)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repository, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=repository, capture_output=True, text=True, timeout=10,
                                check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": bool(status.strip())}


@dataclasses.dataclass(frozen=True)
class Figure:
    """One published number (or short text) with its provenance.

    Parameters
    ----------
    name : str
        Dotted name; the first part is the report section, e.g.
        ``"ternary_unit.ecp5.p512.fmax_mhz"``.
    value : int, float or str
        The figure itself; numbers must be finite.
    unit : str
        Unit of ``value`` (``""`` for counts and text).
    label : str
        One of :data:`LABELS`.
    source : str
        The function or command that produced the figure.
    notes : str
        Conditions, caveats, inputs of a projection.
    machine : str
        Where the figure was obtained; this machine (:func:`machine_description`) by default,
        or e.g. ``"NVIDIA H200"`` or ``"ULX3S ECP5-85F"``.
    date : str
        ISO date; today by default.

    Raises
    ------
    ValueError
        If the name is not dotted, the label is not one of :data:`LABELS` or a number is not
        finite.
    TypeError
        If the value is neither a number nor a string.
    """

    name: str
    value: int | float | str
    unit: str
    label: str
    source: str
    notes: str = ""
    machine: str = dataclasses.field(default_factory=machine_description)
    date: str = dataclasses.field(default_factory=lambda: datetime.date.today().isoformat())

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"figure name must be dotted, like 'section.figure_name' (letters, "
                             f"digits, '_' and '-' between dots), not {self.name!r}")
        if self.label not in LABELS:
            raise ValueError(f"figure {self.name}: label must be one of "
                             f"{', '.join(LABELS)}, not {self.label!r}")
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"figure {self.name}: value must be a number or a string, not "
                            f"{value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"figure {self.name}: value must be finite, not {value!r}; "
                             f"report a failed measurement as a problem instead")

    @property
    def section(self) -> str:
        """The first part of the name: the report table this figure goes in."""
        return self.name.split(".", 1)[0]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Figure:
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class Problem:
    """A benchmark provider that gave no figures: ``kind`` is ``"failed"`` (an error) or
    ``"skipped"`` (not applicable here, e.g. no GPU); ``message`` says what and why."""

    source: str
    kind: str
    message: str

    def __post_init__(self):
        if self.kind not in ("failed", "skipped"):
            raise ValueError(f"problem kind must be 'failed' or 'skipped', not {self.kind!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def format_value(value) -> str:
    """A number as a table shows it: integers grouped, floats to 4 significant digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.4g}"
    if abs(value) >= 1e3:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown(figures: list[Figure], problems: list[Problem], metadata: dict,
              plots: list[str], preface: str = "") -> str:
    dirty = " (with uncommitted changes)" if metadata["dirty"] else ""
    lines = ["# tern benchmark report", "",
             f"Date: {metadata['date']}  ", f"Commit: {metadata['commit'] or 'unknown'}{dirty}  ",
             f"Machine running the report: {metadata['machine']}", "",
             "Every number carries a label:", ""]
    lines += [f"- **{label}**: {meaning}." for label, meaning in LABELS.items()]
    if preface:
        lines += ["", preface.rstrip("\n")]
    sections: dict[str, list[Figure]] = {}
    for figure in figures:
        sections.setdefault(figure.section, []).append(figure)
    for section, members in sections.items():
        lines += ["", f"## {section}", "",
                  "| figure | value | unit | label | machine | source | notes |",
                  "|---|---:|---|---|---|---|---|"]
        for figure in members:
            lines.append("| " + " | ".join(_cell(part) for part in (
                figure.name.split(".", 1)[1], format_value(figure.value), figure.unit,
                figure.label, figure.machine, figure.source, figure.notes)) + " |")
    if problems:
        lines += ["", "## Providers without figures", ""]
        lines += [f"- **{problem.kind}** `{problem.source}`: {_cell(problem.message)}"
                  for problem in problems]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(plot).stem}]({plot})" for plot in plots]
    return "\n".join(lines) + "\n"


def figures_output(path, force: bool = False) -> Path:
    """The ``-o`` file of a measuring script, checked before it measures
    (:func:`~tern_fpga.contracts.output_paths.check_output_file`: never a folder, a device or a
    link, and a file of another kind only with ``force``); its folder is created.

    Raises
    ------
    OutputPathError
        If the file must not be written; the message says why and what to do.
    """
    path = Path(path)
    if not path.parent.exists():
        try:
            path.parent.mkdir(parents=True)
        except OSError as error:
            raise OutputPathError(f"-o {path}: cannot create the folder {path.parent}: "
                                  f"{error.strerror or error}; choose a folder you can write "
                                  f"to") from None
    return check_output_file(path, FIGURES_FILE, force=force)


def write_report(figures, directory, problems=(), preface: str = "") -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``directory`` (created if needed).

    Parameters
    ----------
    figures : iterable of Figure
        In the order they should appear; sections appear in order of their first figure.
    directory : str or os.PathLike
        Where to write; every ``*.png`` already there is embedded in ``report.md``.
    problems : iterable of Problem
        Providers that failed or were skipped; listed, never silently dropped.
    preface : str
        Markdown put between the legend and the figure tables (the comparison tables of
        :mod:`tern_fpga.explore.baselines_comparison`); also kept in ``report.json``.

    Returns
    -------
    (Path, Path)
        The JSON and Markdown files.
    """
    figures, problems = list(figures), list(problems)
    for item in figures:
        if not isinstance(item, Figure):
            raise TypeError(f"write_report takes Figure objects, not {item!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    metadata = {"date": now.isoformat(timespec="seconds"),
                "machine": machine_description(), **git_commit()}
    plots = sorted(path.name for path in directory.glob("*.png"))
    json_path, markdown_path = directory / "report.json", directory / "report.md"
    json_path.write_text(json.dumps({
        "metadata": metadata, "labels": LABELS,
        "figures": [figure.to_dict() for figure in figures],
        "problems": [problem.to_dict() for problem in problems], "plots": plots,
        **({"preface": preface} if preface else {}),
    }, indent=2) + "\n")
    markdown_path.write_text(_markdown(figures, problems, metadata, plots, preface))
    return json_path, markdown_path
