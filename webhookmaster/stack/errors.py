"""The one error the stack raises: its message is the single line the user sees."""


class StackError(RuntimeError):
    """A service could not be prepared or started; ``str()`` names the problem in one line,
    ``detail`` holds the log tail that explains it."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail
