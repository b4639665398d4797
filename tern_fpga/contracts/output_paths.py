"""Where a command may write: every output path is checked before the command starts its work.

A mistake in an output path should cost seconds and destroy nothing, so each ``tern`` command
that writes files checks each of them here first (README, "The command line"):

* the folder a file goes into must exist and be writable: it is never created for a file (an
  output *folder*, such as ``tern verilog -o DIR``, is created if its own parent exists);
* a path that exists must be a regular file where a file is written and a folder where a
  folder is: never a device, a pipe or a socket, and never a symbolic link, which is neither
  followed nor replaced (pass the link's target if that is the file you mean);
* an existing file is overwritten only if it is empty or of the command's own kind (a
  ``.tern`` export for ``tern export``, recognised by its first bytes, not by its name), or
  with ``--force``;
* never one of the command's own inputs, whether ``--force`` is given or not.

Every refusal is an :class:`OutputPathError` whose one-line message names the option, the path
and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from tern_fpga.contracts.errors import TernError

__all__ = ["PNG", "OutputKind", "OutputPathError", "add_force_argument", "check_output_file",
           "check_output_folder"]

# How much of an existing file its kind is recognised from (a JSON report is read whole).
HEAD_BYTES = 1 << 20
_FILE_TYPES = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
               (stat.S_ISSOCK, "a socket"))


class OutputPathError(TernError):
    """An output path that a command must not write: the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class OutputKind:
    """What a command writes, to recognise an earlier copy that it may overwrite.

    Parameters
    ----------
    description : str
        For messages: ``"a .tern export"``.
    recognise : callable
        Whether the first :data:`HEAD_BYTES` of an existing file (all of a shorter one) show
        that it is of this kind.
    """

    description: str
    recognise: Callable[[bytes], bool]

    @classmethod
    def starting_with(cls, description: str, *prefixes: bytes) -> OutputKind:
        """A kind recognised by its first bytes (a format's magic number)."""
        return cls(description, lambda head: head.startswith(prefixes))

    @classmethod
    def text_matching(cls, description: str, pattern: bytes) -> OutputKind:
        """A kind whose beginning matches the regular expression ``pattern``."""
        compiled = re.compile(pattern)
        return cls(description, lambda head: compiled.match(head) is not None)

    @classmethod
    def json_with_keys(cls, description: str, keys: Iterable[str]) -> OutputKind:
        """A JSON object that has at least ``keys`` (a report of this command)."""
        keys = frozenset(keys)

        def recognise(head: bytes) -> bool:
            try:
                value = json.loads(head)
            except (ValueError, RecursionError):
                return False
            return isinstance(value, dict) and keys <= value.keys()
        return cls(description, recognise)


PNG = OutputKind.starting_with("a PNG image", b"\x89PNG\r\n\x1a\n")


def add_force_argument(parser, what: str = "an existing file of another kind"):
    """``--force``: overwrite ``what`` (never a folder, a device, a link or an input)."""
    parser.add_argument("--force", action="store_true",
                        help=f"overwrite {what} (never a folder, device, link or an input of "
                             f"the command)")


def _named(option: str | None, path: Path) -> str:
    return f"{option} {path}" if option else str(path)


def _check_folder_writable(folder: Path, name: str):
    """Create and remove a file in ``folder``: the one test that holds for root, read-only
    mounts and access control lists alike."""
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".tern-write-test-")
    except OSError as error:
        raise OutputPathError(f"{name}: cannot write into the folder {folder}: "
                              f"{error.strerror or error}; choose a folder you can write "
                              f"to") from None
    os.close(handle)
    os.unlink(probe)


def _check_parent(path: Path, name: str):
    parent = path.parent
    if not parent.exists():
        raise OutputPathError(f"{name}: the folder {parent} does not exist; create it first "
                              f"(mkdir -p {parent}) or choose another path")
    if not parent.is_dir():
        raise OutputPathError(f"{name}: {parent} is not a folder; choose another path")
    _check_folder_writable(parent, name)


def _file_type(mode: int) -> str | None:
    return next((what for test, what in _FILE_TYPES if test(mode)), None)


def _is_input(path: Path, inputs: Iterable) -> Path | None:
    for item in inputs:
        if item is not None and os.path.exists(item) and os.path.samefile(path, item):
            return Path(item)
    return None


def _check_existing(path: Path, kind: OutputKind | None, force: bool, inputs, name: str,
                    subject: str = "it"):
    """Refuse to write over ``path``, which exists, unless it is a regular file that may go;
    messages start with ``name`` and call the file ``subject``."""
    status = os.lstat(path)
    if stat.S_ISLNK(status.st_mode):
        raise OutputPathError(f"{name}: {subject} is a symbolic link (to {os.readlink(path)}); "
                              f"tern neither writes through a link nor replaces it: pass the "
                              f"file itself, or remove the link")
    what = _file_type(status.st_mode)
    if what is not None or not stat.S_ISREG(status.st_mode):
        raise OutputPathError(f"{name}: {subject} is {what or 'not a regular file'}, not a file "
                              f"tern may write; choose a path for a new file")
    source = _is_input(path, inputs)
    if source is not None:
        raise OutputPathError(f"{name}: {subject} is one of this command's inputs ({source}); "
                              f"writing it would destroy it: choose another path")
    if not status.st_mode & 0o222:
        raise OutputPathError(f"{name}: {subject} is read-only; make it writable "
                              f"(chmod u+w {path}) or choose another path")
    if force or status.st_size == 0:
        return
    try:
        with open(path, "rb") as file:
            head = file.read(HEAD_BYTES)
    except OSError as error:
        raise OutputPathError(f"{name}: cannot read {path} to see what it is: "
                              f"{error.strerror or error}; choose another path") from None
    if kind is not None and kind.recognise(head):
        return
    what = f"is not {kind.description}" if kind is not None else "already exists"
    raise OutputPathError(f"{name}: {subject} {what} (it starts with {head[:12]!r}); pass "
                          f"--force to overwrite it, or choose another path")


def check_output_file(path, kind: OutputKind | None, *, force: bool = False, inputs=(),
                      option: str | None = "-o") -> Path:
    """Refuse now what writing the file ``path`` later would get wrong (see the module).

    Parameters
    ----------
    path : str or os.PathLike
    kind : OutputKind or None
        What the command writes; an existing file of this kind (or an empty one) may be
        overwritten. ``None``: any existing file needs ``force``.
    force : bool
        Overwrite an existing regular file of another kind.
    inputs : iterable of paths
        The command's input files; ``path`` may never be one of them.
    option : str or None
        The option that named ``path``, for messages (``"-o"``, ``"--trace"``).

    Returns
    -------
    Path

    Raises
    ------
    OutputPathError
    """
    path = Path(path)
    name = _named(option, path)
    if os.path.lexists(path):
        _check_existing(path, kind, force, inputs, name)
    _check_parent(path, name)
    return path


def check_output_folder(path, files: Mapping[str, OutputKind | None] | None = None, *,
                        force: bool = False, inputs=(), option: str | None = "-o",
                        empty: bool = False) -> Path:
    """Refuse now what writing into the folder ``path`` later would get wrong.

    The folder may be missing (its parent must exist: it is created by the command) or exist
    (a link to a folder is one); each of ``files``, a mapping of the names the command writes
    inside it to their kinds, is checked as :func:`check_output_file` checks a file.
    ``empty``: an existing folder that holds anything needs ``force``.

    Raises
    ------
    OutputPathError
    """
    path = Path(path)
    name = _named(option, path)
    if not os.path.lexists(path):
        _check_parent(path, name)
        return path
    mode = os.stat(path).st_mode if path.exists() else os.lstat(path).st_mode
    if not stat.S_ISDIR(mode):
        what = _file_type(mode) or ("a broken symbolic link" if stat.S_ISLNK(mode)
                                    else "a file")
        raise OutputPathError(f"{name}: it is {what}, not a folder; choose a folder (it is "
                              f"created if missing)")
    _check_folder_writable(path, name)
    if empty and not force and any(path.iterdir()):
        raise OutputPathError(f"{name}: the folder {path} is not empty; choose another "
                              f"{option or 'folder'} or pass --force to overwrite an earlier "
                              f"run's files in it")
    for file_name, kind in (files or {}).items():
        if os.path.lexists(path / file_name):
            _check_existing(path / file_name, kind, force, inputs, name,
                            subject=str(path / file_name))
    return path
