"""Train SASRec for a data set once and cache it under ``home/models``.

The cache file is ``sasrec-<dataset>-<key>.npz`` where ``key`` hashes the data set's shape
and content (a checksum of its interaction arrays), the training configuration and the
model file format, so changing any of them trains a new model; a cached file that cannot
be read is retrained, never trusted.

With the weights the file carries the weight of the transition model in the device's
structured signal, chosen on validation items the model did not train on
(``choose_transition_blend``): a setting of the trained model, like its epochs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cdarec.seqrec.runtime import FORMAT_VERSION, SASRecModel
from cdarec.seqrec.sasrec import TrainConfig, TrainProgress

if TYPE_CHECKING:
    from rich.console import Console

    from cdarec.data import Dataset

log = logging.getLogger(__name__)


def model_key(ds: Dataset, cfg: TrainConfig) -> str:
    """12 hex digits identifying (data set, configuration, file format)."""
    ident = {
        "dataset": ds.name,
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": ds.n_interactions,
        "items_crc": zlib.crc32(np.ascontiguousarray(ds.inter_items).tobytes()),
        "indptr_crc": zlib.crc32(np.ascontiguousarray(ds.indptr).tobytes()),
        "config": cfg.model_dump(mode="json"),
        "format": FORMAT_VERSION,
    }
    blob = json.dumps(ident, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:12]


def model_path(ds: Dataset, home: Path | str, cfg: TrainConfig) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ds.name)
    return Path(home) / "models" / f"sasrec-{safe}-{model_key(ds, cfg)}.npz"


BLEND_USERS = 2000  # at most this many validation users choose the transition weight


def choose_transition_blend(model: SASRecModel, ds: Dataset) -> dict[str, Any]:
    """Meta entries fixing the transition model's weight in the structured signal.

    Each weight of ``BLEND_GRID`` is tried on the validation items the model has not been
    trained on (``untrained_valid_users``: the watched users for a ``fit_valid`` model; a
    seeded sample of at most ``BLEND_USERS``), ranked as the device ranks them: the whole
    catalogue less the history (``blend_sweep``), the history being the training
    sequence and the transition model the device's (fitted on the training split). The
    weight with the best NDCG@10 wins. The device reads it with ``structured_blend``.
    """
    from cdarec.data import leave_one_out
    from cdarec.device.ranking import BLEND_GRID, TRANSITION_BLEND, blend_sweep
    from cdarec.device.sequence import TransitionModel
    from cdarec.seqrec.sasrec import untrained_valid_users

    split = leave_one_out(ds)
    clean = untrained_valid_users(model.meta, split.train, split.valid)
    users = [u for u in split.valid_users() if u in clean and len(split.train[u])]
    if len(users) > BLEND_USERS:
        pick = np.random.default_rng(0).choice(len(users), BLEND_USERS, replace=False)
        users = [users[i] for i in sorted(pick)]
    if not users:
        return {"transition_blend": TRANSITION_BLEND, "transition_blend_users": 0}
    tm = TransitionModel.fit(split.train, ds.n_items)
    totals = np.zeros((len(BLEND_GRID), 2))
    for start in range(0, len(users), 256):
        part = users[start : start + 256]
        hists = [np.asarray(split.train[u], dtype=np.int64) for u in part]
        labels = np.array([int(split.valid[u]) for u in part])  # type: ignore[arg-type]
        eligible = np.ones((len(part), ds.n_items), dtype=bool)
        for i, h in enumerate(hists):
            eligible[i, h] = False
        eligible[np.arange(len(part)), labels] = True
        trans = np.stack([tm.scores(h) for h in hists])
        sweep = blend_sweep(model.scores_batch(hists), trans, eligible, labels, BLEND_GRID)
        totals += len(part) * np.array([sweep[float(b)] for b in BLEND_GRID])
    totals /= len(users)
    best = max(range(len(BLEND_GRID)), key=lambda i: (totals[i, 1], totals[i, 0]))
    return {
        "transition_blend": float(BLEND_GRID[best]),
        "transition_blend_users": len(users),
        "transition_blend_sweep": {
            str(b): {"HR@10": round(hr, 4), "NDCG@10": round(nd, 4)}
            for b, (hr, nd) in zip(BLEND_GRID, totals.tolist(), strict=True)
        },
    }


def with_transition_blend(model: SASRecModel, ds: Dataset, path: Path | None = None) -> SASRecModel:
    """``model`` with its transition weight chosen (a file written before the weight was
    part of it gets one now, saved back to ``path`` so that it is chosen once)."""
    if "transition_blend" not in model.meta:
        model.meta.update(choose_transition_blend(model, ds))
        if path is not None:
            try:
                model.save(path)
            except OSError as e:  # a read-only cache: chosen again next time
                log.warning("could not save the transition weight into %s: %s", path, e)
    return model


def train_or_load(
    ds: Dataset,
    home: Path | str,
    cfg: TrainConfig | None = None,
    console: Console | None = None,
    *,
    retrain: bool = False,
) -> SASRecModel:
    """The cached SASRec model for ``ds`` and ``cfg``, training (with a progress bar on
    ``console``) and saving it first if there is none or the cached file is invalid.

    Trains on the leave-one-out training sequences plus, with ``cfg.fit_valid`` (the
    default), the validation items of every user but the ``cfg.valid_users`` whose
    validation items give the per-epoch metric shown on the bar. Test items are never
    trained on.
    """
    from cdarec.data import leave_one_out

    cfg = cfg or TrainConfig()
    path = model_path(ds, home, cfg)
    if path.exists() and not retrain:
        try:
            model = SASRecModel.load(path)
            if model.n_items == ds.n_items:
                return with_transition_blend(model, ds, path)
            log.warning(
                "%s: %d items, data set has %d; retraining", path, model.n_items, ds.n_items
            )
        except ValueError as e:
            log.warning("%s; retraining", e)

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from cdarec.seqrec.sasrec import train_sasrec

    console = console or Console(stderr=True)
    split = leave_one_out(ds)
    with Progress(
        TextColumn("[bold]SASRec {task.fields[ds]}[/] epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  valid N@10 {task.fields[valid]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(
            "train", total=None, ds=ds.name, epoch=f"0/{cfg.epochs}", loss="-", valid="-"
        )

        def on_progress(p: TrainProgress) -> None:
            fields: dict[str, str] = {"epoch": f"{p.epoch}/{p.epochs}", "loss": f"{p.loss:.4f}"}
            if p.valid_ndcg10 is not None:
                fields["valid"] = f"{100 * p.valid_ndcg10:.2f}"
            bar.update(
                task,
                total=p.batches * p.epochs,
                completed=(p.epoch - 1) * p.batches + p.batch,
                **fields,
            )

        weights = train_sasrec(
            split.train, ds.n_items, cfg, progress=on_progress, valid=split.valid
        )
    model = with_transition_blend(SASRecModel(weights), ds)
    model.save(path)
    meta = weights.meta
    console.print(
        f"SASRec {ds.name}: {meta['epochs_done']} epochs in {meta['train_s']:.0f} s"
        + (" (fitted to the time budget)" if meta["budget_bound"] else "")
        + f"; transition weight {meta['transition_blend']:g}"
        + f" (validation, {meta['transition_blend_users']} users) -> {path}"
    )
    return model
