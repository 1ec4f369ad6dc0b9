"""The ``leukemia-cnn`` command: ``main`` (entry point and error handling), ``parser`` (the
command line, its help and usage errors), ``commands`` (one handler per command), ``status``
(the exit statuses)."""
