"""DAVIS/DHP19 32-bit event addresses split into their fields (step 2 of the converter), and
the encoder that puts the fields back together.

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


_FIELD_LIMITS = (("x", 10), ("y", 9), ("camera", 4))  # field, bits


def encode_addresses(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    camera: npt.ArrayLike,
    *,
    special: npt.ArrayLike = False,
    aps: npt.ArrayLike = False,
) -> npt.NDArray[np.uint32]:
    """DAVIS/DHP19 32-bit addresses from their fields: the inverse of :func:`decode_addresses`.

    The arguments broadcast against each other (scalars give a 0-d array).

    Args:
        x: raw column (bits 12-21), 0-1023; DHP19's sensor uses 0-345.
        y: raw row (bits 22-30), 0-511; DHP19's sensor uses 0-259.
        p: polarity: ON (bit 11 set) where ``> 0`` (``+1`` or True), OFF otherwise (``-1``,
            0 or False).
        camera: camera id (bits 0-3), 0-15; DHP19 has 0-3.
        special: set the special-event flag (bit 10): a start/stop event of the Vicon
            recording (its other fields are then usually 0).
        aps: set the APS/IMU flag (bit 31): a record the converter ignores.

    Returns:
        The addresses, uint32, of the broadcast shape.

    Raises:
        Dhp19Error: a field outside its bits' range (a negative one included), or a field that
            is not whole numbers.

    Example:
        >>> hex(int(encode_addresses(5, 7, 1, 2)))  # y=7, x=5, ON, camera 2
        '0x1c05802'
    """
    fields = {"x": np.asarray(x), "y": np.asarray(y), "camera": np.asarray(camera)}
    for name, bits in _FIELD_LIMITS:
        value = fields[name]
        if value.size and value.dtype.kind not in "biu":
            raise Dhp19Error(f"address field {name} must be whole numbers, got {value.dtype}")
        if value.size and (value.min() < 0 or value.max() >= 1 << bits):
            bad = int(value.min()) if value.min() < 0 else int(value.max())
            raise Dhp19Error(f"address field {name} must lie in 0-{(1 << bits) - 1}, got {bad}")
    fx, fy, fc = (fields[n].astype(np.uint32) for n in ("x", "y", "camera"))
    on = (np.asarray(p) > 0).astype(np.uint32)
    flag_special = np.asarray(special, dtype=bool).astype(np.uint32)
    flag_aps = np.asarray(aps, dtype=bool).astype(np.uint32)
    packed = (flag_aps << 31) | (fy << 22) | (fx << 12) | (on << 11) | (flag_special << 10) | fc
    out: npt.NDArray[np.uint32] = np.asarray(packed, dtype=np.uint32)
    return out
