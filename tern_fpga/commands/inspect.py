"""``tern inspect``: show what a ``.tern`` export holds and whether its bytes are intact."""

from __future__ import annotations

import json
import textwrap

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.export_format import ExportFile
from tern_fpga.contracts.packing import WEIGHTS_PER_BYTE_2BIT

_INDENT = " " * 15


def register(subparsers):
    parser = subparsers.add_parser(
        "inspect", help="show the header, sections and first instructions of a .tern export",
        description="Print a .tern export's header (model configuration, accelerator parameters "
                    "and their hash, weight packing, sizes), its section table with each "
                    "section's CRC status and the first instructions of its program. Exits 1 "
                    "with a one-line error if the file is not a valid export.")
    parser.add_argument("file", metavar="MODEL.tern", help="the export to inspect")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("-n", "--instructions", type=int, default=16, metavar="N",
                        help="instructions to disassemble (default: 16)")
    parser.set_defaults(func=run)


def _program(export_file: ExportFile, count: int) -> dict:
    words = export_file.array("program")
    report = {"words": int(words.size), "disassembly": None}
    try:
        from tern_fpga.contracts.isa import WORDS_PER_INSTRUCTION, disassemble
    except ImportError:
        return report
    report["instructions"] = int(words.size // WORDS_PER_INSTRUCTION)
    shown = words[:min(max(count, 0), report["instructions"]) * WORDS_PER_INSTRUCTION]
    try:
        report["disassembly"] = disassemble(shown).splitlines() if shown.size else []
    except TernError as error:
        # A program from another ISA version: still show the rest of the file.
        report["disassembly_error"] = str(error)
    return report


def describe(export_file: ExportFile, instructions: int = 16) -> dict:
    """Everything ``tern inspect`` shows, as JSON values.

    Reads each section's bytes to check its CRC; disassembles the program only if it is
    intact and :mod:`tern_fpga.contracts.isa` is importable.
    """
    header, params = export_file.header, export_file.params
    sections = [{**section.to_dict(), "crc32": f"0x{section.crc32:08x}",
                 "crc_ok": export_file.section_ok(name)}
                for name, section in export_file.sections.items()]
    weights = export_file.sections["weights"]
    ok = {section["name"]: section["crc_ok"] for section in sections}
    return {
        "file": str(export_file.path),
        "file_bytes": export_file.file_length,
        "format_version": export_file.format_version,
        "params": {"preset": params.name, "hash": header["params_hash"],
                   "fields": header["params"]},
        "model_config": header["model_config"],
        "metadata": header["metadata"],
        "weights": {"packing": header["metadata"]["weight_packing"],
                    "weights": WEIGHTS_PER_BYTE_2BIT * weights.size,
                    "image_bytes": weights.size, "stored_bytes": weights.length},
        "sections": sections,
        "program": _program(export_file, instructions) if ok["program"] else None,
    }


def _fields(values: dict) -> str:
    text = " ".join(f"{key}={json.dumps(value)}" for key, value in values.items())
    return textwrap.fill(text, 100, initial_indent=_INDENT, subsequent_indent=_INDENT).strip()


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 70 else text[:69] + "…"


def format_text(report: dict) -> str:
    """The human-readable form of :func:`describe`'s report."""
    metadata, weights, params = dict(report["metadata"]), report["weights"], report["params"]
    created = f"{metadata.pop('created_utc', '?')} by tern {metadata.pop('tern_version', '?')}"
    metadata.pop("weight_packing", None)
    bits = 8 * weights["stored_bytes"] / max(weights["weights"], 1)
    lines = [
        (f"{report['file']}: .tern format {report['format_version']}, "
         f"{report['file_bytes']:,} bytes"),
        f"  parameters   {params['preset']} (hash {params['hash']})",
        f"{_INDENT}{_fields(params['fields'])}",
        f"  model        {_fields(report['model_config'])}",
        (f"  weights      {weights['weights']:,} 2-bit codes in a "
         f"{weights['image_bytes']:,}-byte image, stored {weights['packing']} in "
         f"{weights['stored_bytes']:,} bytes ({bits:.2f} bits/weight)"),
        f"  created      {created}",
    ]
    if metadata:
        lines.append(f"  metadata     {len(metadata)} more key(s)")
        lines += [f"{_INDENT}{key}: {_short(value)}" for key, value in metadata.items()]
    lines.append(f"sections ({len(report['sections'])})")
    lines.append(f"  {'name':<16} {'dtype':<8} {'shape':<16} {'offset':>10} {'bytes':>10} "
                 f"{'encoding':<8} {'crc32':<10} status")
    for section in report["sections"]:
        shape = "[" + ", ".join(map(str, section["shape"])) + "]"
        status = "ok" if section["crc_ok"] else "CRC MISMATCH"
        lines.append(f"  {section['name']:<16} {section['dtype']:<8} {shape:<16} "
                     f"{section['offset']:>10} {section['length']:>10} "
                     f"{section['encoding']:<8} {section['crc32']:<10} {status}")
    program = report["program"]
    if program is None:
        lines.append("program: not shown (its section is damaged)")
    elif "disassembly_error" in program:
        lines.append(f"program: {program['words']:,} words; cannot disassemble: "
                     f"{program['disassembly_error']}")
    elif program["disassembly"] is None:
        lines.append(f"program: {program['words']:,} words (no disassembler: "
                     f"tern_fpga.contracts.isa missing)")
    else:
        lines.append(f"program: {program['words']:,} words, {program['instructions']:,} "
                     f"instructions; the first {len(program['disassembly'])}:")
        lines += [f"  {index:5d}  {text}" for index, text in enumerate(program["disassembly"])]
    return "\n".join(lines)


def run(args) -> int:
    export_file = ExportFile(args.file)
    report = describe(export_file, args.instructions)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_text(report))
    damaged = [section["name"] for section in report["sections"] if not section["crc_ok"]]
    if damaged:
        export_file.array(damaged[0])  # raises the CRC error: one line, exit status 1
    return 0
