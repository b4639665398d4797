"""The LiteDRAM configuration of the ULX3S's SDRAM, in the form ``litedram_gen``'s YAML takes.

The ULX3S v3 carries one 32 MB, 16-bit SDR SDRAM: 4 banks x 8,192 rows x 512 columns. Boards
ship with an ISSI IS42S16160 or a Micron MT48LC16M16A2 of that geometry (litex-boards' ULX3S
target defaults to the Micron part); IS42S16160's timings (tRP = tRCD = tWR = 20 ns, tRFC = 70
ns) are the slower of the two, so a controller timed for it also meets the Micron part.
"""

from __future__ import annotations

import copy

__all__ = ["ULX3S_SDRAM", "sdram_config", "sdram_core_config"]

ULX3S_SDRAM = {
    # Only the generator's ECP5 platform reads the device (I/O primitives, no PLL for SDR).
    "device": "LFE5U-85F-6BG381C",
    # No CPU: the core exposes its control/status registers on a Wishbone slave (wb_ctrl) that
    # our init sequencer drives (docs/sdram.md).
    "cpu": "None",
    "memtype": "SDR",
    "sdram_module": "IS42S16160",
    "sdram_module_nb": 2,  # bytes of the data bus: 16 bits
    "sdram_rank_nb": 1,
    # Full-rate generic SDR PHY, as litex-boards' ULX3S target at its default sdram_rate 1:1.
    "sdram_phy": "GENSDRPHY",
    # The system (and SDRAM) clock: litex-boards' ULX3S default. CAS latency 2 up to 100 MHz.
    "sys_clk_freq": 50e6,
    # One native user port at the controller's width (16 bits, one column per beat).
    "user_ports": {"0": {"type": "native"}},
}


def sdram_config(**changes) -> dict:
    """A copy of :data:`ULX3S_SDRAM` with ``changes`` applied (e.g. ``sys_clk_freq=25e6``).

    Raises
    ------
    KeyError
        If a change names a key that the configuration does not have.
    """
    config = copy.deepcopy(ULX3S_SDRAM)
    for key, value in changes.items():
        if key not in config:
            raise KeyError(f"{key!r} is not a key of the SDRAM configuration; "
                           f"the keys are {sorted(config)}")
        config[key] = value
    return config


def sdram_core_config(params) -> dict:
    """The configuration for a design clocked at ``params.clock_hz`` (an
    :class:`~tern_fpga.contracts.params.AcceleratorParameters`): the core and the SDRAM share the
    clock, and the timings in cycles follow it."""
    return sdram_config(sys_clk_freq=float(params.clock_hz))
