"""The exception tree of streammeta.

    StreamMetaError
    ├── ConfigError          a configuration key has a bad value (names key, value, expectation)
    ├── ParameterFileError   a parameter or checkpoint file is corrupt, foreign or mismatched
    ├── DataError            a data set given on the command line cannot be read
    ├── BrokerError          the Kafka edge cannot start (unreachable broker, missing topic)
    ├── StoreError           a checkpoint store cannot be listed, read or written (an OSError)
    └── ContractError        a consumed message breaks its data contract (streammeta.client)

Per-record problems are not exceptions: they become dead letters with a reason
(see ``streammeta.io.codec.Reason``).
"""

from __future__ import annotations


class StreamMetaError(Exception):
    """Root of every error streammeta raises on purpose."""


class ConfigError(StreamMetaError):
    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"config key {key!r}: got {value!r}, expected {expected}")


class ParameterFileError(StreamMetaError):
    pass


class DataError(StreamMetaError):
    pass


class BrokerError(StreamMetaError):
    pass


class StoreError(StreamMetaError, OSError):
    """A checkpoint store failed (after its retries); an ``OSError`` too, so callers
    that survive a full local disk survive an object-store outage the same way."""


class ContractError(StreamMetaError):
    """A message that does not match its contract; says which field and why."""
