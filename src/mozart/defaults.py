"""The sampling defaults every entry point shares (CLI, Python API, studio, evaluate).

Kept apart from controls.py so that ``import mozart`` can name them in its signatures without
importing numpy.  Chosen by measurement with the built-in model: docs/training.md, "Decoding
defaults" (at top-p 0.95 its samples sit closer to real music, per style, than at 1.0 or 0.9,
and temperature 0.9 is no better than 1.0).
"""

#: Sampling temperature.
DEFAULT_TEMPERATURE = 1.0
#: Top-p (nucleus) share: sample from the smallest set of words holding this much probability.
DEFAULT_TOP_P = 0.95
