"""Helpers shared by several test modules (tests/ is on the test path:
`from support import ...`)."""
