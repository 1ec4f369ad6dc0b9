"""The CNN: the Keras model built from config, training (one MLflow run per training),
evaluation, and the pyfunc wrapper that logs the model together with its preprocessing.

May import: data, tracking, features and the top-level modules. Logs through ``tracking.runs``;
only ``pyfunc`` imports mlflow (the logged model's class: see tests/test_architecture.py).
"""
