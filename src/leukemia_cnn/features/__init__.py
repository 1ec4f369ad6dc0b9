"""HOG + PCA features (fit on train only), the process-pool worker that computes HOG, and the
classical baseline on them.

May import: data, tracking and the top-level modules. Never imports tensorflow, nor mlflow
(it logs through ``tracking.runs``).
"""
