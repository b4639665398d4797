"""The one exception type for a user's mistake: the CLI prints its message as one line."""


class TernError(Exception):
    """Bad input from the user (a file, an argument, a board): the message says what and how to
    fix it. Subclasses ``Exception`` so library callers can catch it like any error."""
