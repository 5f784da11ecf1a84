"""Cloud side: train SASRec for a data set once and ship it to ``home/models`` for the device.

The cache file is ``sasrec-<dataset>-<key>.npz`` where ``key`` hashes the data set's shape
and content (a checksum of its interaction arrays), the training configuration and the
model file format, so changing any of them trains a new model; a cached file that cannot
be read is retrained, never trusted.

With the weights the file carries the weight of the transition model in the device's
structured signal, chosen on validation items the model did not train on
(``choose_transition_blend``): a setting of the trained model, like its epochs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from cdarec.cloud.training.sasrec import TrainProgress
from cdarec.seqrec.artefacts import model_path
from cdarec.seqrec.config import TrainConfig
from cdarec.seqrec.sasrec import SASRecModel
from cdarec.seqrec.structured import with_transition_blend

if TYPE_CHECKING:
    from rich.console import Console

    from cdarec.data import Dataset

log = logging.getLogger(__name__)


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

    from cdarec.cloud.training.sasrec import train_sasrec

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
            if p.epoch_done and not console.is_terminal:
                # A log file (the background training) gets a line per epoch: a live
                # bar is drawn only on a terminal.
                console.print(
                    f"SASRec {ds.name} epoch {p.epoch}/{p.epochs} loss {p.loss:.4f}"
                    + (f" valid N@10 {fields['valid']}" if "valid" in fields else "")
                    + f" {p.elapsed_s:.0f} s"
                )
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
        + (
            f" (validation converged; best epoch {meta['best_valid_epoch']})"
            if meta.get("converged")
            else ""
        )
        + f"; transition weight {meta['transition_blend']:g}"
        + f" (validation, {meta['transition_blend_users']} users) -> {path}"
    )
    return model
