"""The one error the local stack raises: a :class:`CommandError`, so the CLI prints its one
line (and the log tail in ``detail``)."""

from webhookmaster.ops.errors import CommandError


class StackError(CommandError):
    """A service could not be prepared or started; ``str()`` names the problem in one line,
    ``detail`` holds the log tail that explains it."""
