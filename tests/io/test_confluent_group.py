"""The generation read from librdkafka's serialised group metadata."""

from __future__ import annotations

import struct

from streammeta.io.confluent_group import generation_of


def test_the_generation_is_read_after_the_magic_and_unknown_otherwise() -> None:
    # As librdkafka 2.x writes it: magic, generation, group id, member id, flags.
    blob = b"CGMDv2:" + struct.pack("=i", 7) + b"g\x00rdkafka-1\x00\x01"
    assert generation_of(blob) == 7
    assert generation_of(b"CGMDv2:" + struct.pack("=i", -1) + b"g\x00") == -1
    assert generation_of(b"CGMDv3:" + struct.pack("=i", 7)) == -1  # another format
    assert generation_of(b"CGMDv2:\x01") == -1  # cut short
    assert generation_of(None) == -1
