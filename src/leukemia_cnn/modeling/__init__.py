"""The CNN: the Keras model built from config, training (one MLflow run per training), the
out-of-distribution guard, calibration and evaluation.

May import: data, tracking, features and the top-level modules. Logs through ``tracking.runs``;
the train stage logs the served model of :mod:`leukemia_cnn.serving.pyfunc` (the one import
upward, listed in tests/test_architecture.py).
"""
