"""The CNN: the Keras model built from config, training (one MLflow run per training),
evaluation, and the pyfunc wrapper that logs the model together with its preprocessing.

May import: data, tracking, features and the top-level modules.
"""
