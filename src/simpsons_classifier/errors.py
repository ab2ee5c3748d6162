"""The base of every error a user can cause and fix (a missing weights package, a stale export, an unreachable
registry...). The CLI prints such an error as one ``error:`` line and exits with status 2; anything else is a bug
and keeps its traceback."""


class UserError(Exception):
    """A problem the user can fix; the message says how."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal at a safe point, its state saved; the message says how to continue. The exit
    status is 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), what a shell reports for a process the
    signal ended."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
