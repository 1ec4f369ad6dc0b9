"""Watching new images: the batch drift check (``leukemia-cnn drift``), its statistical tests
and its report.

May import: every package below it (data to serving) and the top-level modules.
"""
