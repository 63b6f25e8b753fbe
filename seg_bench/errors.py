"""User-facing errors: the CLI prints their message on one line, without a traceback."""


class UserError(Exception):
    """Something the user can fix: a bad option, a missing file, an unknown name."""


class DataError(UserError):
    """A dataset file is missing, unreadable or breaks the dataset's conventions."""
