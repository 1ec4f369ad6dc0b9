"""The MLflow store every stage logs to (embedded SQLite or a server), run tags, data
versions, configuration ids, the closing of runs whose process died, and the run-logging
functions (``runs``) through which features, modeling and study reach MLflow.

May import: the top-level modules. Nothing in it imports tensorflow.
"""
