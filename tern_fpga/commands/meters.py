"""``tern meters``: list the power meters on this machine, optionally reading each once."""

from __future__ import annotations

from tern_fpga.contracts.errors import TernError
from tern_fpga.host.meters import find_meters, open_meter


def register(subparsers):
    parser = subparsers.add_parser(
        "meters", help="list the power meters found on this machine",
        description="List the power meters on this machine with the spec that opens each "
                    "(hwmon sensors such as an INA219 on the ina2xx driver, RAPL energy "
                    "counters, NVIDIA GPUs through nvidia-smi, Bluetooth serial ports where a "
                    "UM24C/UM25C/UM34C USB meter may be bound). See docs/measurement.md.")
    parser.add_argument("--read", action="store_true",
                        help="also take one reading from each meter (opens serial ports)")
    parser.add_argument("--sysfs", default="/sys", metavar="ROOT",
                        help="where sysfs is mounted (default: /sys)")
    parser.set_defaults(func=run)


def run(args) -> int:

    meters = find_meters(args.sysfs)
    if not meters:
        print(f"no power meters found (looked for hwmon power sensors and RAPL counters under "
              f"{args.sysfs}, nvidia-smi on PATH, /dev/rfcomm*); see docs/measurement.md to "
              f"wire one")
        return 0
    width = max(len(meter.spec) for meter in meters)
    for meter in meters:
        line = f"{meter.spec:<{width}}  {meter.description}"
        if args.read:
            try:
                opened = open_meter(meter.spec, args.sysfs)
                try:
                    line += f": {opened.read_watts():.3f} W"
                finally:
                    opened.close()
            except TernError as error:
                line += f": unreadable ({error})"
        print(line)
    return 0
