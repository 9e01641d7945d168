"""``python -m mozart`` (and ``torchrun -m mozart``) runs the CLI; so does the ``mozart`` script.

The CLI's imports happen inside ``run``, so a Ctrl-C while they load is an exit 130 with
one line, like a Ctrl-C anywhere else, not a traceback.
"""


def run() -> None:
    """Console entry point."""
    try:
        from .interrupts import exit_interrupted, install, interrupt_requested

        install()
        try:
            from .cli import main
        except KeyboardInterrupt:
            exit_interrupted()
        except Exception:
            if interrupt_requested():  # an import the Ctrl-C cut short ("initialization failed")
                exit_interrupted()
            raise
        main()
    finally:
        _forget_escaped_interrupts()


def _forget_escaped_interrupts() -> None:
    """Make a Ctrl-C that we handled end in exit status 130, not in death by SIGINT (-2).

    CPython remembers a KeyboardInterrupt that escaped any ``exec`` of a string, even one that
    was caught further up: ``dataclasses`` builds its methods that way, so a Ctrl-C that lands
    while a command lazily imports torch or transformers is remembered.  Under ``python -m`` (and
    ``torchrun -m``) the interpreter then kills itself with SIGINT after a clean
    ``sys.exit(130)``, with nothing on stderr.  Every ``exec`` of a string starts by clearing
    that memory, so an empty one on the way out does.
    """
    exec("")  # noqa: S102 - a constant empty string; see above


if __name__ == "__main__":
    run()
