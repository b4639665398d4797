"""The SDR SDRAM's initialisation, as data: the register writes that our gateware makes on the
LiteDRAM core's control bus in place of a CPU, and the SDRAM commands that they must produce.

Without a CPU nobody runs LiteX's BIOS ``sdram_init()``; :class:`~.init_fsm.InitSequencer`
plays :func:`init_program` instead, a list of register writes and waits on the core's
``wb_ctrl`` bus. The DFI injector (DFII) of the core turns each "issue" write into one command
on the SDRAM's pins. The sequence is the datasheets' power-up sequence (ISSI IS42S16160 and
Micron MT48LC16M16A2, the two chips of the ULX3S):

1. CKE high, NOP for at least 100 us (200 us here: :data:`POWER_UP_US`), with the DFII in
   software control so that the controller's refresh timer sends nothing;
2. PRECHARGE ALL (A10 high), then tRP;
3. AUTO REFRESH, tRFC; AUTO REFRESH, tRFC;
4. LOAD MODE REGISTER: burst length 1, sequential, CAS latency of the PHY, standard operation,
   programmed write burst; then tMRD;
5. DFII back to hardware control (the controller's refresher and bank machines take the bus);
6. ``init_done`` set: the generated core releases its user ports only then.

LiteDRAM's own SDR sequence (``litedram.init.get_sdr_phy_init_sequence``) loads the mode
register twice around a second PRECHARGE ALL, once with A8 set ("reset DLL", which SDR parts
do not have); the final mode register value is the same as here.
:func:`expected_commands` lists the commands with their least gaps, which the simulation test
compares with the commands the memory model saw.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["COMMANDS", "DFII_COMMAND", "DFII_CONTROL", "POWER_UP_US", "T_MRD_CYCLES",
           "ExpectedCommand", "RegisterWrite", "Wait", "expected_commands", "init_program",
           "mode_register"]

# Bits of the DFII registers (LiteDRAM's sdram_phy.h names them the same).
DFII_CONTROL = {"sel": 0x01, "cke": 0x02, "odt": 0x04, "reset_n": 0x08}
DFII_COMMAND = {"cs": 0x01, "we": 0x02, "cas": 0x04, "ras": 0x08, "wrdata": 0x10, "rddata": 0x20}
# The SDRAM commands as the DFI's {cs_n, ras_n, cas_n, we_n} (bit 3 to bit 0), the number that
# the generated simulation core's command log prints.
COMMANDS = {"MRS": 0b0000, "REF": 0b0001, "PRE": 0b0010, "ACT": 0b0011, "WR": 0b0100,
            "RD": 0b0101}
POWER_UP_US = 200.0
# Load mode register to the next command: 2 clocks on both chips.
T_MRD_CYCLES = 2


@dataclasses.dataclass(frozen=True)
class RegisterWrite:
    """Write ``value`` to the control register ``register`` (a name of the core's csr.csv)."""

    register: str
    value: int


@dataclasses.dataclass(frozen=True)
class Wait:
    """Do nothing for ``cycles`` clock cycles."""

    cycles: int


@dataclasses.dataclass(frozen=True)
class ExpectedCommand:
    """One command of the initialisation on the SDRAM's pins.

    ``name`` is a key of :data:`COMMANDS`; ``min_gap`` the least number of clock cycles from
    this command to the next one (to the first command of the controller, for the last).
    """

    name: str
    bank: int
    address: int
    min_gap: int


def mode_register(cas_latency: int) -> int:
    """The SDR mode register: burst length 1 (A2..A0 = 0), sequential burst (A3 = 0), CAS
    latency in A6..A4, standard operation (A8..A7 = 0), programmed write burst (A9 = 0).

    Raises
    ------
    ValueError
        If ``cas_latency`` is not 2 or 3, the latencies that SDR chips support.
    """
    if cas_latency not in (2, 3):
        raise ValueError(f"CAS latency {cas_latency} is not one an SDR SDRAM supports (2 or 3); "
                         f"the PHY's latency comes from the clock (LiteDRAM: 2 up to 100 MHz)")
    return cas_latency << 4


def power_up_cycles(sys_clk_freq: float, power_up_us: float = POWER_UP_US) -> int:
    """Clock cycles of the power-up wait."""
    return math.ceil(power_up_us * 1e-6 * sys_clk_freq)


def _issue(command: str, address: int, bank: int) -> list:
    """The register writes that make the DFII send one command."""
    cs_n, ras_n, cas_n, we_n = ((COMMANDS[command] >> bit) & 1 for bit in (3, 2, 1, 0))
    bits = (DFII_COMMAND["cs"] * (1 - cs_n) | DFII_COMMAND["ras"] * (1 - ras_n)
            | DFII_COMMAND["cas"] * (1 - cas_n) | DFII_COMMAND["we"] * (1 - we_n))
    return [RegisterWrite("sdram_dfii_pi0_address", address),
            RegisterWrite("sdram_dfii_pi0_baddress", bank),
            RegisterWrite("sdram_dfii_pi0_command", bits),
            RegisterWrite("sdram_dfii_pi0_command_issue", 1)]


def expected_commands(cas_latency: int, timings: dict) -> list[ExpectedCommand]:
    """The initialisation's commands and the least gap after each.

    ``timings`` holds ``tRP`` and ``tRFC`` in clock cycles (:class:`.GeneratedCore` timings).
    """
    return [ExpectedCommand("PRE", 0, 1 << 10, timings["tRP"]),
            ExpectedCommand("REF", 0, 0, timings["tRFC"]),
            ExpectedCommand("REF", 0, 0, timings["tRFC"]),
            ExpectedCommand("MRS", 0, mode_register(cas_latency), T_MRD_CYCLES)]


def init_program(cas_latency: int, timings: dict, sys_clk_freq: float,
                 power_up_us: float = POWER_UP_US) -> list:
    """The register writes and waits that initialise the SDRAM (the module docstring's steps).

    Each wait after a command is the command's least gap: the register writes of the next
    command add a few more cycles on the bus.
    """
    software = DFII_CONTROL["cke"] | DFII_CONTROL["odt"] | DFII_CONTROL["reset_n"]
    program = [RegisterWrite("sdram_dfii_control", software),
               Wait(power_up_cycles(sys_clk_freq, power_up_us))]
    for command in expected_commands(cas_latency, timings):
        program += _issue(command.name, command.address, command.bank)
        program.append(Wait(command.min_gap))
    program += [RegisterWrite("sdram_dfii_control", software | DFII_CONTROL["sel"]),
                RegisterWrite("ddrctrl_init_done", 1)]
    return program
