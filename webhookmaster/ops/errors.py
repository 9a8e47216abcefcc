"""The one error a ``webhookmaster`` command raises: its message is the single line the user
sees."""


class CommandError(RuntimeError):
    """A command could not do its work; ``str()`` names the problem in one line, ``detail``
    holds what explains it (e.g. a log tail)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail
