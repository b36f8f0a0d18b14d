"""The pitfall study and what study and tune recipes share.

- :mod:`.study`: the pitfall study (a grid of pre-training runs, each probed)
- :mod:`.config`: strict recipe sections, ``quick`` overrides, YAML loading

The measurement moved to :mod:`keras_skipae.probe`; ``features``,
``reconstruction``, ``stats`` and ``plots`` here are one-line shims that
re-export it and go when their importers move.
"""
