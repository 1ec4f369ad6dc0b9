"""The MLflow model registry: registering versions, moving the `champion` alias, predicting
with a registered model, and the summary a user reads after a run.

May import: data, tracking, features, modeling and the top-level modules.
"""
