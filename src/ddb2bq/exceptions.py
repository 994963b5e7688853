"""Errors raised by ddb2bq.

Every error derives from one root, and every class says whether trying again can help::

    Ddb2bqError
    ├── ConfigError              bad or missing configuration; fix the file or environment
    ├── RecordError              an input record that cannot be parsed (names the record)
    │   └── ConversionError      an attribute value that cannot be converted (names the attribute)
    ├── RetryableError           the same call may succeed later (quota, 5xx, timeout)
    └── TerminalError            the same call will fail again; the change goes to the dead letters

Messages are full sentences that name the table, item key, attribute or column involved and say
what to do about it.
"""

from __future__ import annotations


class Ddb2bqError(Exception):
    """The root of every error ddb2bq raises."""


class ConfigError(Ddb2bqError):
    """The configuration file or environment holds an unknown key or a bad value."""


class RecordError(Ddb2bqError):
    """An input record is not in the shape its format documents.

    ``record`` names the record (its index in the input and its event id or key when known).
    """

    def __init__(self, message: str, *, record: str = "") -> None:
        super().__init__(f"{record}: {message}" if record else message)
        self.record = record


class ConversionError(RecordError):
    """An attribute value cannot be converted to BigQuery without loss.

    ``path`` is the attribute path inside the item, such as ``orders[2].price``.
    """

    def __init__(self, message: str, *, path: str = "", record: str = "") -> None:
        where = f"attribute {path!r}: " if path else ""
        super().__init__(f"{where}{message}", record=record)
        self.path = path


class RetryableError(Ddb2bqError):
    """The operation failed for a reason that may pass: try again after a back-off."""


class TerminalError(Ddb2bqError):
    """The operation will fail again as it is: send the change to the dead letters."""
