"""The dataflow core's units (issue 15, ``docs/dataflow.md``): components with stream ports that
the new core joins with ``wiring.connect``. The instruction-at-a-time core (``hw/core.py``) does
not use them yet, so they are outside the committed bitstreams' design sources."""
