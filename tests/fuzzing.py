"""Shared helpers of the fuzz tests: hypothesis settings, bit flips and a valid AEDAT file.

Imported like dhp19_fixture (``from fuzzing import ...``): pytest puts tests/ on the path.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings

from hybridpose.io.aedat import aedat2_bytes
from hybridpose.io.dhp19 import encode_addresses

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
"""Settings of the fuzz tests: few examples (each writes files), no deadline."""

SPECIAL = int(encode_addresses(0, 0, False, 0, special=True))
"""A start/stop special event of camera 0."""

_I = np.arange(30)
VALID_AEDAT = aedat2_bytes(
    [*encode_addresses(_I % 346, _I % 260, _I % 2 == 0, _I % 4).tolist(), SPECIAL],
    [*range(1000, 1030), 1000],
)
"""A small valid AEDAT 2.0 file: 30 polarity events of the 4 cameras and one special event."""


def flip_bits(data: bytes, positions: list[int]) -> bytes:
    """``data`` with the bits at ``positions`` flipped (bit ``p`` of byte ``p // 8``, wrapped)."""
    out = bytearray(data)
    for pos in positions:
        out[(pos // 8) % len(out)] ^= 1 << (pos % 8)
    return bytes(out)
