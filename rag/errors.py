"""Errors a user can act on; the CLI and UI show their message as is."""


class RagError(Exception):
    """Base class: the message says what went wrong and what to do."""


class DocumentError(RagError):
    """A document could not be read as text (missing, empty, binary, unsupported)."""


class QuestionError(RagError):
    """The question is empty or too long."""


class IndexStoreError(RagError):
    """An index is missing, corrupt, or was built with other settings than the ones in use."""


class SettingsError(RagError, ValueError):
    """A setting (an environment variable, an option, an argument) is out of its range."""
