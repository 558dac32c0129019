"""DAVIS/DHP19 32-bit event addresses split into their fields (step 2 of the converter).

See :mod:`hybridpose.io.dhp19` for the address layout and what the converter does with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hybridpose.io.dhp19.common import BoolArray, Dhp19Error


@dataclass(frozen=True, eq=False)
class DecodedAddresses:
    """The fields of DAVIS addresses (raw sensor frame, before the DHP19 flip).

    Attributes:
        x: (N,) uint16 raw column (bits 12-21).
        y: (N,) uint16 raw row (bits 22-30).
        p: (N,) int8 polarity, +1 if bit 11 is set (ON), else -1.
        camera: (N,) uint8 camera id (bits 0-3).
        is_polarity: (N,) bool, bits 31 and 10 clear: a DVS polarity event.
        is_special: (N,) bool, bit 10 set and bit 31 clear: a start/stop special event.
    """

    x: npt.NDArray[np.uint16]
    y: npt.NDArray[np.uint16]
    p: npt.NDArray[np.int8]
    camera: npt.NDArray[np.uint8]
    is_polarity: BoolArray
    is_special: BoolArray


def decode_addresses(addresses: npt.ArrayLike) -> DecodedAddresses:
    """Split DAVIS/DHP19 32-bit addresses into their fields (vectorised).

    Args:
        addresses: (N,) unsigned 32-bit addresses as read by
            :func:`~hybridpose.io.aedat.read_aedat2`.

    Returns:
        The decoded fields; see :class:`DecodedAddresses`.

    Example:
        >>> d = decode_addresses([0x01C05802])  # y=7, x=5, ON, camera 2
        >>> int(d.x[0]), int(d.y[0]), int(d.p[0]), int(d.camera[0]), bool(d.is_polarity[0])
        (5, 7, 1, 2, True)
    """
    a = np.asarray(addresses).astype(np.uint32)
    if a.ndim != 1:
        raise Dhp19Error(f"addresses must be one-dimensional, got shape {a.shape}")
    aps = (a >> 31) & 1 == 1
    special = (a >> 10) & 1 == 1
    return DecodedAddresses(
        x=((a >> 12) & 0x3FF).astype(np.uint16),
        y=((a >> 22) & 0x1FF).astype(np.uint16),
        p=np.where((a >> 11) & 1 == 1, np.int8(1), np.int8(-1)).astype(np.int8),
        camera=(a & 0xF).astype(np.uint8),
        is_polarity=~aps & ~special,
        is_special=~aps & special,
    )
