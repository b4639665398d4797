"""What ``tern load`` and ``tern generate`` ask of a board, answered without one."""

import types


class StandInBoard:
    """A board for the command tests.

    Members
    -------
    holds : bool
        Whether it holds the export already (no load then).
    answer : list of int or None
        The tokens ``generate`` answers with; ``None``: token 65 (``A``) each time.
    prompt : list of int or None
        The prompt ``generate`` was given.
    running, ends_before_abort : bool
        An earlier run still going; that run ends by itself between STATUS and ABORT.
    interrupt_after : int or None
        Ctrl-C after this many tokens.
    loads, aborts : int
        Loads and ABORTs received.
    """

    def __init__(self, holds: bool = False, answer=None):
        self.holds, self.answer, self.prompt = holds, answer, None
        self.running, self.ends_before_abort, self.interrupt_after = False, False, None
        self.loads, self.aborts = 0, 0
        self.identity = types.SimpleNamespace(board_id=0xFFFF)

    def holds_export(self, export):
        return self.holds

    def restore_work_bank(self, export):
        return 16384

    def load_export(self, export, progress=True):
        self.loads += 1
        return 1024

    def reset(self):
        pass

    def status(self):
        return types.SimpleNamespace(cycles=0, tokens=0, running=self.running)

    def abort(self):
        self.aborts += 1
        still = self.running and not self.ends_before_abort
        steps, self.running = (1234 if still else None), False
        return steps

    def generate(self, prompt, count):
        self.prompt = prompt
        answer = [65] * count if self.answer is None else self.answer[:count]
        for index, token in enumerate(answer):
            if index == self.interrupt_after:
                raise KeyboardInterrupt
            yield token
