"""``python -m mozart`` (and ``torchrun -m mozart``) runs the CLI; so does the ``mozart`` script.

The CLI's imports happen inside ``run``, so a Ctrl-C while they load is an exit 130 with
one line, like a Ctrl-C anywhere else, not a traceback.
"""

import os
import sys


def run() -> None:
    """Console entry point."""
    try:
        from .cli import main
    except KeyboardInterrupt:
        print("mozart: interrupted", file=sys.stderr, flush=True)
        # os._exit, not sys.exit: nothing has started yet, and an interrupt inside some extension's
        # import can leave CPython's "unhandled KeyboardInterrupt" flag set, which turns any later
        # exit into death by SIGINT (status -2 instead of 130)
        os._exit(130)
    main()


if __name__ == "__main__":
    run()
