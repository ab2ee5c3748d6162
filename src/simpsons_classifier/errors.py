"""The base of every error a user can cause and fix (a missing weights package, a stale export, an unreachable
registry...). The CLI prints such an error as one ``error:`` line and exits with status 2; anything else is a bug
and keeps its traceback."""


class UserError(Exception):
    """A problem the user can fix; the message says how."""
