"""The MLflow model registry: registering versions, choosing and moving the `champion` alias,
model cards and the lineage of the data a version was scored on.

May import: data, tracking, features, modeling and the top-level modules.
"""
