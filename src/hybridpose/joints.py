"""The 13-joint skeleton shared by DHP19, the synthetic data, the models and the metrics."""

from __future__ import annotations

JOINT_NAMES: tuple[str, ...] = (
    "head",
    "shoulderR",
    "shoulderL",
    "elbowR",
    "elbowL",
    "hipR",
    "hipL",
    "handR",
    "handL",
    "kneeR",
    "kneeL",
    "footR",
    "footL",
)
"""DHP19's joint order (the field names of its Vicon ``XYZPOS`` struct); index = joint id."""

NUM_JOINTS = len(JOINT_NAMES)

BONES: tuple[tuple[int, int], ...] = (
    (0, 1),  # head - shoulderR
    (0, 2),  # head - shoulderL
    (1, 2),  # shoulderR - shoulderL
    (1, 3),  # shoulderR - elbowR
    (3, 7),  # elbowR - handR
    (2, 4),  # shoulderL - elbowL
    (4, 8),  # elbowL - handL
    (1, 5),  # shoulderR - hipR
    (2, 6),  # shoulderL - hipL
    (5, 6),  # hipR - hipL
    (5, 9),  # hipR - kneeR
    (9, 11),  # kneeR - footR
    (6, 10),  # hipL - kneeL
    (10, 12),  # kneeL - footL
)
"""The 14 edges of DHP19's skeleton drawing, as pairs of joint ids."""
