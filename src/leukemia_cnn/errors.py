"""The one exception type a user of leukemia-cnn can hit."""


class LeukemiaCNNError(Exception):
    """A problem the user can fix: the message says what was wrong, where and how to fix it.

    The CLI prints the message (no traceback) and exits with status 1.
    """


class ConfigError(LeukemiaCNNError):
    """A configuration value is invalid; the message names the key, the value and what is allowed."""


class DataError(LeukemiaCNNError):
    """Input data is missing or unusable; the message names the offending files."""


class OutputError(LeukemiaCNNError):
    """An output path would overwrite something the command does not own (the project, a
    tracked file, an input, a folder it did not write); nothing was written."""
