"""Gateware of the iCE40UP5K (iCEBreaker) port (issue 18, ``docs/boards.md``: "A plan for the
iCEBreaker port"). Nothing in the ULX3S designs imports it, so it is outside the committed
bitstreams' design sources."""
