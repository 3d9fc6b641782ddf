"""Errors raised by the dataset loaders."""


class DatasetError(ValueError):
    """A dataset could not be found, read or validated; the message says what and how to fix it."""
