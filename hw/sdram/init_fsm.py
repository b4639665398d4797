"""InitSequencer: plays the SDRAM's initialisation program on the LiteDRAM core's control bus.

The program (:func:`~.init_sequence.init_program`) is unrolled into one state per step: a
register write is one Wishbone write on ``wb_ctrl`` (held until ``ack``), a wait counts cycles.
After the last step ``done`` stays high. No CPU, no ROM: about 20 states and one counter.
"""


from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tern_fpga.hw.sdram.init_sequence import RegisterWrite, Wait

__all__ = ["InitSequencer", "WishboneControlSignature"]


class WishboneControlSignature(wiring.Signature):
    """The controller side of LiteDRAM's ``wb_ctrl`` bus (classic Wishbone, 32-bit data,
    word addresses: a register's byte address over 4). ``cti``/``bte`` stay 0 (single cycles).
    """

    def __init__(self, address_width: int = 30):
        super().__init__({
            "adr": Out(address_width), "dat_w": Out(32), "sel": Out(4), "cyc": Out(1),
            "stb": Out(1), "we": Out(1), "ack": In(1), "dat_r": In(32), "err": In(1),
        })


class InitSequencer(wiring.Component):
    """Runs ``program`` once after reset, then holds ``done`` high.

    Parameters
    ----------
    program : list of RegisterWrite and Wait
        From :func:`~.init_sequence.init_program`.
    registers : dict of str to int
        Byte address of each control register (:attr:`.GeneratedCore.registers`).

    Raises
    ------
    KeyError
        If the program writes a register that ``registers`` does not have.
    TypeError
        If a step is neither a register write nor a wait.
    """

    bus: Out(WishboneControlSignature())
    done: Out(1)

    def __init__(self, program, registers: dict):
        self._steps = []
        for step in program:
            if isinstance(step, RegisterWrite):
                if step.register not in registers:
                    self._MustUse__silence = True  # never elaborated: no "unused" warning
                    raise KeyError(f"the init program writes {step.register!r}, which the "
                                   f"generated core does not have; it has {sorted(registers)}")
                self._steps.append(("write", registers[step.register] // 4, step.value))
            elif isinstance(step, Wait):
                if step.cycles > 0:
                    self._steps.append(("wait", step.cycles, None))
            else:
                self._MustUse__silence = True
                raise TypeError(f"init program step {step!r} is neither a RegisterWrite nor a "
                                 f"Wait")
        super().__init__()

    @property
    def steps(self) -> list:
        """The program as ``(kind, word address or cycles, value)`` tuples, waits of 0 left out."""
        return list(self._steps)

    def elaborate(self, platform):
        m = Module()
        longest = max([arg for kind, arg, _ in self._steps if kind == "wait"], default=1)
        count = Signal(range(longest + 1))

        def enter(index):
            """Go to step ``index`` (loading its counter if it is a wait), or to DONE."""
            if index == len(self._steps):
                m.next = "DONE"
                return
            kind, arg, _ = self._steps[index]
            if kind == "wait":
                m.d.sync += count.eq(arg - 1)
            m.next = f"STEP_{index}"

        with m.FSM():
            with m.State("START"):
                enter(0)
            for index, (kind, arg, value) in enumerate(self._steps):
                with m.State(f"STEP_{index}"):
                    if kind == "write":
                        m.d.comb += [self.bus.cyc.eq(1), self.bus.stb.eq(1), self.bus.we.eq(1),
                                     self.bus.sel.eq(0xF), self.bus.adr.eq(arg),
                                     self.bus.dat_w.eq(value)]
                        with m.If(self.bus.ack):
                            enter(index + 1)
                    else:
                        with m.If(count == 0):
                            enter(index + 1)
                        with m.Else():
                            m.d.sync += count.eq(count - 1)
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
        return m
