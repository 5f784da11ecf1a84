"""Shared: the leave-one-out split, the standard protocol for sequential recommendation.

Each user's time-ordered history is cut so that the last item is the test target and
the one before it the validation target; everything earlier is training data. Short
histories are defined explicitly rather than dropped, so every user of the data set has
an entry and evaluation code never has to guess:

==========  ====================  ==========  ===========
n items     train                 valid       test
==========  ====================  ==========  ===========
0           empty                 None        None
1           empty                 None        seq[0]
2           seq[:1]               None        seq[1]
>= 3        seq[:-2]              seq[-2]     seq[-1]
==========  ====================  ==========  ===========

With two items the first is kept for training (not validation) because a test target
with no history at all tells a sequential model nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cdarec.data.datasets import Dataset

_EMPTY = np.zeros(0, dtype=np.int32)
_EMPTY.setflags(write=False)


@dataclass
class LeaveOneOut:
    """Per-user train sequences (item indices) and validation / test targets."""

    train: dict[str, np.ndarray]
    valid: dict[str, int | None]
    test: dict[str, int | None]

    def test_users(self) -> list[str]:
        """Users that have a test target, in data-set order."""
        return [u for u, t in self.test.items() if t is not None]

    def valid_users(self) -> list[str]:
        """Users that have a validation target, in data-set order."""
        return [u for u, v in self.valid.items() if v is not None]


def split_sequence(seq: np.ndarray) -> tuple[np.ndarray, int | None, int | None]:
    """(train, valid, test) of one time-ordered sequence, per the table above."""
    n = len(seq)
    if n == 0:
        return _EMPTY, None, None
    if n == 1:
        return _EMPTY, None, int(seq[0])
    if n == 2:
        return seq[:1], None, int(seq[1])
    return seq[:-2], int(seq[-2]), int(seq[-1])


def leave_one_out(ds: Dataset) -> LeaveOneOut:
    """Split every user of ``ds``; train arrays are read-only views, not copies."""
    train: dict[str, np.ndarray] = {}
    valid: dict[str, int | None] = {}
    test: dict[str, int | None] = {}
    for user, seq in zip(ds.users, ds.sequences, strict=True):
        train[user], valid[user], test[user] = split_sequence(seq)
    return LeaveOneOut(train=train, valid=valid, test=test)


def history_before_test(ds: Dataset, user: str) -> np.ndarray:
    """Everything the user did before the test item (train + validation).

    This is what an evaluation prompt may show: the validation item is past behaviour
    at test time, only the test item itself is hidden. Empty for 0 or 1 interactions.
    """
    seq = ds.sequence(user)
    return seq[:-1] if len(seq) else _EMPTY


def user_disjoint(ds: Dataset, share: float = 0.2, seed: int = 0) -> tuple[Dataset, list[str]]:
    """The honest split (issue 17): a seeded ``share`` of the users is held out for
    evaluation, and the cloud's population - what its models train, validate and are
    tuned on - is everyone else, over the same items (same indices). The held-out users'
    histories reach the evaluated models only as the device's private input at test
    time. Returns (the population, the held-out users in data-set order)."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"the held-out share must be between 0 and 1, not {share}")
    n = ds.n_users
    k = min(max(1, round(share * n)), n - 1)
    held = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    keep = np.ones(n, dtype=bool)
    keep[held] = False
    population = ds.with_users(np.flatnonzero(keep).tolist(), f"{ds.name}-train-s{seed}-{k}held")
    return population, [ds.users[i] for i in held]
