"""The optional per-camera event filters: hot pixels and DHP19's background-activity filter.

See step 6 of :mod:`hybridpose.io.dhp19`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hybridpose.io.dhp19.common import (
    BACKGROUND_SUPPORT_US,
    DEFAULT_BACKGROUND_STAMPS,
    HOT_PIXEL_THRESHOLD,
    SENSOR_SIZE,
    BackgroundStamps,
    BoolArray,
    Dhp19Error,
    check_background_stamps,
)

_NEIGHBOURS = tuple((dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dx, dy) != (0, 0))


def hot_pixel_mask(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    threshold: int = HOT_PIXEL_THRESHOLD,
    sensor_size: tuple[int, int] = SENSOR_SIZE,
) -> BoolArray:
    """Which events to keep: those of pixels with fewer than ``threshold`` events.

    As in the DHP19 reference (``hotpixelarray >= threventhotpixel``, threshold 1e4), a pixel
    with ``threshold`` events or more is hot and all its events go.

    Args:
        x: (N,) columns of one camera's events.
        y: (N,) rows.
        threshold: a pixel with this many events or more is hot.
        sensor_size: ``(width, height)``.

    Returns:
        (N,) bool, True = keep.

    Raises:
        Dhp19Error: ``x`` and ``y`` differ in shape or a pixel lies outside the sensor.

    Example:
        >>> hot_pixel_mask([0, 0, 1], [0, 0, 0], threshold=2, sensor_size=(2, 1)).tolist()
        [False, False, True]
    """
    xi = np.asarray(x, dtype=np.int64)
    yi = np.asarray(y, dtype=np.int64)
    if xi.ndim != 1 or xi.shape != yi.shape:
        raise Dhp19Error(f"x and y must be (N,) arrays, got {xi.shape}, {yi.shape}")
    width, height = sensor_size
    if np.any((xi < 0) | (xi >= width) | (yi < 0) | (yi >= height)):
        raise Dhp19Error(f"hot-pixel filter: a pixel lies outside the {width}x{height} sensor")
    pixel = yi * width + xi
    counts = np.bincount(pixel, minlength=width * height)
    keep: BoolArray = counts[pixel] < threshold
    return keep


def background_activity_mask(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    t: npt.ArrayLike,
    *,
    support_us: int = BACKGROUND_SUPPORT_US,
    sensor_size: tuple[int, int] = SENSOR_SIZE,
    stamps: BackgroundStamps = DEFAULT_BACKGROUND_STAMPS,
) -> BoolArray:
    """Which events the DHP19 reference background-activity filter keeps (BackgroundFilter.m).

    The rule, for one camera: a map of the last timestamp of each pixel starts as "never"; the
    events are taken one by one in stream order and each

    1. **passes** if its pixel holds a stamp and ``t - stamp <= support_us`` (inclusive);
    2. then, kept or not, **stamps** its time on its 8 neighbours (``stamps="neighbours"``, the
       reference's rule since commit 3395890 of 2019-10-04, "don't write to self"), or on its
       8 neighbours and its own pixel (``"neighbours-and-self"``, the June 2019 rule), unless it
       lies on the sensor border (``x == 0``, ``x == W - 1``, ``y == 0`` or ``y == H - 1``):
       border events stamp nothing (but can pass).

    Under the current rule the stamp an event reads was always written by an event on a
    neighbouring pixel, so a pixel firing alone never passes, however often; under the June
    rule its second event within the support passes on its first one's stamp.

    Ties: an event sees the stamps of every event before it in the stream, those with the same
    timestamp included, but not of those after it, even with the same timestamp; nor its own
    (it stamps after its test). So of two neighbouring events with equal timestamps, the second
    can pass on the first's stamp, not the other way round.

    Differences from the reference: it initialises the map to 0 instead of "never", but works
    on large absolute timestamps, so its first events fail as well (here they fail whatever
    the timestamps). It tiles the 4 cameras side by side in one image, so an event on the inner
    edge of a tile stamps into the neighbouring camera's tile and the tile edges are not all
    border; here each camera is filtered on its own, with its own border.

    Vectorised (no loop per event; the result is exactly that of the loop, for any stream
    order): the stamp an event reads is the one of the last earlier stamping event on one of
    the pixels whose events stamp it: its 8 neighbours, and itself under the June rule. Events
    are sorted by ``(pixel, stream index)``, and for each of those offsets one ``searchsorted``
    finds the last earlier stamping event on that pixel.

    Args:
        x: (N,) columns of one camera's events.
        y: (N,) rows.
        t: (N,) timestamps in stream order (the converter passes them sorted ascending).
        support_us: the support window ``dt``.
        sensor_size: ``(width, height)``.
        stamps: which pixels an event stamps, ``"neighbours"`` (default) or
            ``"neighbours-and-self"`` (see :data:`~hybridpose.io.dhp19.common.BackgroundStamps`).

    Returns:
        (N,) bool, True = keep.

    Raises:
        Dhp19Error: the inputs differ in length, a pixel lies outside the sensor, or ``stamps``
            is not one of the two rules.

    Example:
        >>> background_activity_mask([5, 6, 6], [5, 5, 5], [0, 70_000, 140_001]).tolist()
        [False, True, False]
        >>> background_activity_mask([5, 5], [5, 5], [0, 10]).tolist()  # a lone pixel
        [False, False]
        >>> background_activity_mask([5, 5], [5, 5], [0, 10], stamps="neighbours-and-self").tolist()
        [False, True]
    """
    check_background_stamps(stamps, "background filter: stamps")
    xi = np.asarray(x, dtype=np.int64)
    yi = np.asarray(y, dtype=np.int64)
    ti = np.asarray(t, dtype=np.int64)
    n = len(ti)
    if xi.shape != (n,) or yi.shape != (n,) or ti.ndim != 1:
        raise Dhp19Error(f"x, y and t must be (N,) arrays, got {xi.shape}, {yi.shape}, {ti.shape}")
    keep = np.zeros(n, dtype=bool)
    width, height = sensor_size
    if np.any((xi < 0) | (xi >= width) | (yi < 0) | (yi >= height)):
        raise Dhp19Error(f"background filter: a pixel lies outside the {width}x{height} sensor")
    pixel = yi * width + xi
    order = np.argsort(pixel, kind="stable")  # all events by (pixel, stream index)
    q_pixel, q_x, q_y = pixel[order], xi[order], yi[order]
    stamping = (q_x > 0) & (q_x < width - 1) & (q_y > 0) & (q_y < height - 1)
    s_pixel, s_index = q_pixel[stamping], order[stamping]
    if len(s_index) == 0:
        return keep
    keys = s_pixel * n + s_index  # ascending: (pixel, stream index) of the stamping events
    latest = np.full(n, -1, dtype=np.int64)  # per event in `order`: the stamp it reads, if any
    offsets = _NEIGHBOURS + (((0, 0),) if stamps == "neighbours-and-self" else ())
    for dx, dy in offsets:
        sx, sy = q_x + dx, q_y + dy
        inside = (sx >= 0) & (sx < width) & (sy >= 0) & (sy < height)
        source = q_pixel + (dy * width + dx)
        # the key just before (source, i) is the last stamping event on the source pixel before
        # event i; the queries ascend like the keys, which keeps the binary searches cache-local
        pos = np.searchsorted(keys, source * n + order, side="left") - 1
        safe = np.maximum(pos, 0)
        hit = inside & (pos >= 0) & (s_pixel[safe] == source)
        np.maximum(latest, np.where(hit, s_index[safe], -1), out=latest)
    seen = latest >= 0
    keep[order] = seen & (ti[order] - ti[np.maximum(latest, 0)] <= support_us)
    return keep
