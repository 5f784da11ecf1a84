"""Device side: the user abstract, the private history condensed into what the cloud may see.

Deterministic by design: the abstract is built from counts over the history (genres,
decades, size, recency, feedback) into a ``UserAbstract`` whose fields are enums,
genre names from the catalogue vocabulary and bucketed numbers. No free text is
produced here, so no title can slip into it.
"""

from __future__ import annotations

import time
from collections import Counter

from cdarec.contract.schemas import HistorySize, UserAbstract, UserState
from cdarec.data import Dataset
from cdarec.device.memory import DeviceRecord

ACTIVE_DAYS = 30
RECENT_WINDOW = 50
COLD_MAX = 2
LIGHT_MAX = 50


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


def user_state(rec: DeviceRecord, dataset_end: float, now: float | None = None) -> UserState:
    n = len(rec.history)
    bucket = "cold" if n <= COLD_MAX else "light" if n <= LIGHT_MAX else "heavy"
    now = time.time() if now is None else now
    if rec.feedback and now - rec.feedback[-1].ts < 3600:
        recency = "active"
    elif rec.history:
        # Data-set activity is judged against the data set's own end, not today's date.
        last = rec.history[-1]
        ref = now if last.source != "dataset" else dataset_end
        recency = "active" if ref - last.ts <= ACTIVE_DAYS * 86400 else "lapsed"
    else:
        recency = "unknown"
    kinds = {f.kind for f in rec.feedback}
    pos = bool(kinds & {"like", "more_like"})
    neg = bool(kinds & {"dislike", "not_genre"})
    live = "mixed" if pos and neg else "positive" if pos else "negative" if neg else "none"
    return UserState(
        bucket=bucket, history_size=history_size(n), recency=recency, live_feedback=live
    )


def summarize(rec: DeviceRecord, ds: Dataset, dataset_end: float) -> UserAbstract:
    vocab = set(ds.genres)
    recent = [ds.item_index[i] for i in rec.history_ids()[-RECENT_WINDOW:] if i in ds.item_index]
    genre_w: Counter[str] = Counter()
    decade_w: Counter[str] = Counter()
    for age, idx in enumerate(reversed(recent)):
        w = 0.97**age
        item = ds.items[idx]
        for g in item.genres:
            genre_w[g] += w / max(len(item.genres), 1)
        if item.year and 1910 <= item.year < 2030:
            decade_w[f"{item.year // 10 * 10}s"] += w
    avoid: Counter[str] = Counter()
    for iid in rec.disliked():
        if iid in ds.item_index:
            for g in ds.items[ds.item_index[iid]].genres:
                avoid[g] += 1
    avoid_genres = [g for g in rec.avoided_genres() if g in vocab]
    avoid_genres += [g for g, _ in avoid.most_common() if g not in avoid_genres]
    avoid_genres = avoid_genres[:3]
    top = [g for g, _ in genre_w.most_common() if g in vocab and g not in avoid_genres][:3]
    return UserAbstract(
        state=user_state(rec, dataset_end),
        top_genres=top,
        avoid_genres=[g for g in avoid_genres if g in vocab],
        decades=[d for d, _ in decade_w.most_common(2)],  # type: ignore[misc]
    )
