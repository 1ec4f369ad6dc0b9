"""The data checks (Great Expectations suites) of the raw tree, the split and the features,
each a pipeline stage of the same name that writes a JSON and a Markdown report.

May import: data (it reads data's tables) and the top-level modules. Never imports tensorflow
or mlflow.
"""
