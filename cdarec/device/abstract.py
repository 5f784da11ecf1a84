"""Device side: the user abstract, the private history condensed into what the cloud may see.

Deterministic by design: the abstract is built from counts over the history (genres,
decades, size, recency, feedback) into a ``UserAbstract`` whose fields are enums,
genre names from the catalogue vocabulary and bucketed numbers. No free text is
produced here, so no title can slip into it.

Then it is *released* (issue 17): by default as the bucket alone (``abstract_k = 0``:
what met every privacy target of ``cdarec bench privacy`` at no accuracy cost), or
k-anonymously: the most detailed of ``LEVELS`` generalisations that at least ``k`` of
the data set's users share, counted in a public
population table (``PopulationTable``: how many users have each generalised abstract -
aggregate counts, what a cloud may publish beside the model). An abstract a cloud sees
therefore never picks a user out of fewer than ``k`` (``cdarec bench privacy`` measures
re-identification and linkage against it). What a session adds - live feedback, genres
the user said to avoid - is released as it is: it says what the user asked for this
session, not who they are; genres of disliked items are not in it (they would tell the
cloud which shown item was disliked).
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from cdarec.contract.schemas import HistorySize, UserAbstract, UserState
from cdarec.data import Dataset
from cdarec.device.memory import DeviceRecord

ACTIVE_DAYS = 30
RECENT_WINDOW = 50
COLD_MAX = 2
LIGHT_MAX = 50
LEVELS = 5  # 0: everything; 4: the bucket alone (what the plan cannot do without)


def history_size(n: int) -> HistorySize:
    if n == 0:
        return "0"
    if n <= 2:
        return "1-2"
    if n <= 20:
        return "3-20"
    if n <= 100:
        return "21-100"
    if n <= 500:
        return "101-500"
    return "500+"


def _bucket(n: int) -> str:
    return "cold" if n <= COLD_MAX else "light" if n <= LIGHT_MAX else "heavy"


def _recency(last_ts: float | None, from_dataset: bool, dataset_end: float, now: float) -> str:
    if last_ts is None:
        return "unknown"
    # Data-set activity is judged against the data set's own end, not today's date.
    ref = dataset_end if from_dataset else now
    return "active" if ref - last_ts <= ACTIVE_DAYS * 86400 else "lapsed"


def user_state(rec: DeviceRecord, dataset_end: float, now: float | None = None) -> UserState:
    n = len(rec.history)
    now = time.time() if now is None else now
    if rec.feedback and now - rec.feedback[-1].ts < 3600:
        recency = "active"
    else:
        last = rec.history[-1] if rec.history else None
        recency = _recency(
            last.ts if last else None, bool(last and last.source == "dataset"), dataset_end, now
        )
    kinds = {f.kind for f in rec.feedback}
    pos = bool(kinds & {"like", "more_like"})
    neg = bool(kinds & {"dislike", "not_genre"})
    live = "mixed" if pos and neg else "positive" if pos else "negative" if neg else "none"
    return UserState(
        bucket=_bucket(n),  # type: ignore[arg-type]
        history_size=history_size(n),
        recency=recency,  # type: ignore[arg-type]
        live_feedback=live,
    )


def taste(
    recent: Sequence[int], ds: Dataset, avoid: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """The top genres (3) and decades (2) of the recent items (newest weigh most)."""
    vocab = set(ds.genres)
    genre_w: Counter[str] = Counter()
    decade_w: Counter[str] = Counter()
    for age, idx in enumerate(reversed(recent)):
        w = 0.97**age
        item = ds.items[idx]
        for g in item.genres:
            genre_w[g] += w / max(len(item.genres), 1)
        if item.year and 1910 <= item.year < 2030:
            decade_w[f"{item.year // 10 * 10}s"] += w
    top = [g for g, _ in genre_w.most_common() if g in vocab and g not in avoid][:3]
    return top, [d for d, _ in decade_w.most_common(2)]


def summarize(rec: DeviceRecord, ds: Dataset, dataset_end: float) -> UserAbstract:
    """The most detailed abstract (release level 0)."""
    recent = [ds.item_index[i] for i in rec.history_ids()[-RECENT_WINDOW:] if i in ds.item_index]
    avoid = [g for g in rec.avoided_genres() if g in set(ds.genres)][:3]
    top, decades = taste(recent, ds, avoid)
    return UserAbstract(
        state=user_state(rec, dataset_end),
        top_genres=top,
        avoid_genres=avoid,
        decades=decades,  # type: ignore[arg-type]
    )


def generalise(a: UserAbstract, level: int) -> UserAbstract:
    """The abstract at a release level: each drops detail the one before kept."""
    if level <= 0:
        return a
    state = a.state
    top, decades = list(a.top_genres), list(a.decades)
    if level >= 1:
        top, decades = sorted(top[:2]), decades[:1]
    if level >= 2:
        top, decades = list(a.top_genres[:1]), []
        state = state.model_copy(update={"history_size": "withheld"})
    if level >= 3:
        state = state.model_copy(update={"recency": "withheld"})
    if level >= 4:
        top = []
    return a.model_copy(update={"state": state, "top_genres": top, "decades": decades})


def signature(a: UserAbstract) -> tuple:
    """What identifies a user in an abstract: everything but this session's feedback."""
    s = a.state
    return (s.bucket, s.history_size, s.recency, tuple(a.top_genres), tuple(a.decades))


@dataclass(frozen=True)
class PopulationTable:
    """How many of the data set's users have each abstract, at every release level."""

    counts: tuple[Counter, ...]
    n_users: int

    @classmethod
    def of_abstracts(cls, abstracts: Sequence[UserAbstract]) -> PopulationTable:
        return cls(
            tuple(Counter(signature(generalise(a, lv)) for a in abstracts) for lv in range(LEVELS)),
            len(abstracts),
        )

    def count(self, a: UserAbstract, level: int) -> int:
        return self.counts[level].get(signature(generalise(a, level)), 0)


def population_abstracts(ds: Dataset, dataset_end: float, drop_last: int = 0) -> list[UserAbstract]:
    """Every data set user's abstract at the data set's end, read from the CSR arrays
    (what ``summarize`` gives for a device seeded with that history, no feedback);
    ``drop_last``: without each history's last items (a training split's view)."""
    out = []
    for u in range(len(ds.users)):
        lo, hi = int(ds.indptr[u]), int(ds.indptr[u + 1])
        hi = max(lo, hi - drop_last)
        seq = ds.inter_items[lo:hi]
        n = hi - lo
        top, decades = taste(seq[-RECENT_WINDOW:].tolist(), ds)
        last = float(ds.inter_times[hi - 1]) if n else None
        state = UserState(
            bucket=_bucket(n),  # type: ignore[arg-type]
            history_size=history_size(n),
            recency=_recency(last, True, dataset_end, dataset_end),  # type: ignore[arg-type]
            live_feedback="none",
        )
        out.append(UserAbstract(state=state, top_genres=top, decades=decades))  # type: ignore[arg-type]
    return out


def release(a: UserAbstract, table: PopulationTable | None, k: int) -> tuple[UserAbstract, int]:
    """The most detailed generalisation at least ``k`` users of the table share (the
    bucket alone when none does: the plan needs it), and its level; ``k = 0``: the
    bucket alone, ``k = 1``: everything."""
    if k == 0 or (k > 1 and table is None):  # no counts to check k against: the safe side
        return generalise(a, LEVELS - 1), LEVELS - 1
    if k == 1 or table is None:  # table is None only with k == 1 here
        return a, 0
    k = min(k, table.n_users)
    for level in range(LEVELS):
        if table.count(a, level) >= k:
            return generalise(a, level), level
    return generalise(a, LEVELS - 1), LEVELS - 1


_TABLES: weakref.WeakKeyDictionary[Dataset, PopulationTable] = weakref.WeakKeyDictionary()


def population_table(ds: Dataset, dataset_end: float) -> PopulationTable:
    """The data set's population table (built once per loaded data set: a second, each
    evaluation method's resources share it)."""
    table = _TABLES.get(ds)
    if table is None:
        table = _TABLES[ds] = PopulationTable.of_abstracts(population_abstracts(ds, dataset_end))
    return table
