"""Answering with a trained model: the logged pyfunc model (the CNN with its own
preprocessing, calibration and guard), its request rows, and the ``predict`` and ``explain``
commands.

May import: data, tracking, features, modeling, registry and the top-level modules.
"""
