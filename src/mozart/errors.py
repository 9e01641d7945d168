"""The one exception type Mozart raises for bad input, and the range check every option uses."""

import math


class MozartError(Exception):
    """A user-facing error: bad file, malformed tokens, unsupported setting.

    The CLI prints its message as ``mozart: error: <message>`` and exits with status 1,
    so the message must be one line that says what was wrong and why.
    """


def check_range(name: str, value, low: float, high: float, integer: bool = False, low_open: bool = False) -> None:
    """Raise MozartError unless ``value`` is a finite number in [low, high] ((low, high] with
    ``low_open``), and an integer when ``integer``; the message names the option ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise MozartError(f"{name} {value!r}: expected {'an integer' if integer else 'a number'}")
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        if integer:
            bounds = f"{low}..{high}"
        else:
            bounds = f"> {low:g} and <= {high:g}" if low_open else f"{low:g}..{high:g}"
        raise MozartError(f"{name} {value}: expected {bounds}")
