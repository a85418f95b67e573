"""Evaluations of a frozen encoder. ``base.py`` holds the evaluator registry; importing the
package registers the built-in evaluators (``protocols.py``), so that ``base.lookup`` knows
them whichever module is imported first."""

from jepa.evaluate import protocols  # noqa: F401
