"""``python -m mozart`` (and ``torchrun -m mozart``) runs the CLI."""

from .cli import main

main()
