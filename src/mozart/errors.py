"""The one exception type Mozart raises for bad input."""


class MozartError(Exception):
    """A user-facing error: bad file, malformed tokens, unsupported setting.

    The CLI prints its message as ``mozart: error: <message>`` and exits with status 1,
    so the message must be one line that says what was wrong and why.
    """
