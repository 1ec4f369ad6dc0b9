"""The MLflow store every stage logs to (embedded SQLite or a server), run tags, data
versions, configuration ids, and the closing of runs whose process died.

May import: the top-level modules. Nothing in it imports tensorflow.
"""
