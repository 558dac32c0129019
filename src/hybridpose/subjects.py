"""The train/test split of subjects: DHP19's protocol, for real and synthetic data alike.

DHP19 records 17 subjects; its protocol trains on subjects 1-12 and tests on 13-17. The
synthetic dataset numbers its bodies the same way, and the recipes, the evaluation and the
simulator's default subject list read the split from here.
"""

TRAIN_SUBJECTS: tuple[int, ...] = tuple(range(1, 13))
TEST_SUBJECTS: tuple[int, ...] = tuple(range(13, 18))

__all__ = ["TEST_SUBJECTS", "TRAIN_SUBJECTS"]
