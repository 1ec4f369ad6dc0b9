"""The hyperparameter study: Hydra sweeps of train + evaluate over configurations and seeds,
and the report that sets their results beside the paper's Table 1.

May import: every package but cli. Never imports mlflow: it logs and reads runs through
``tracking.runs``.
"""
