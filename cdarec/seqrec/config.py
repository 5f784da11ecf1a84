"""The SASRec configuration (architecture and training), shared by both sides.

Shared (neither side): the cloud's trainer reads it, and it is part of the shipped
model's identity (``cdarec.seqrec.artefacts.model_key`` hashes it into the file name),
so the device's loader reads it too to find the model the cloud trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cdarec.seqrec.sasrec import Arch


class TrainConfig(BaseModel):
    """Hyper-parameters; the defaults are the ML-1M configuration.

    Training runs a fixed number of epochs (``epochs``), stopping earlier only when
    validation has converged (``patience``), so a slower machine reaches the same model,
    later: about 12 minutes on two CPU cores for ML-1M. A wall-clock cap
    (``time_budget_s``) is optional; it is what an earlier version trained to, and a
    machine 1.5x slower then got 16 epochs instead of 29 and a worse model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # architecture
    hidden: int = Field(64, ge=1)
    blocks: int = Field(2, ge=1)
    heads: int = Field(1, ge=1)
    ffn_dim: int | None = Field(None, ge=1, description="FFN width; None = hidden")
    max_len: int = Field(200, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    attn_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="on attention weights")
    ln_eps: float = Field(1e-6, gt=0.0)
    # optimisation
    loss: Literal["full", "sampled"] = "full"
    n_negatives: int = Field(512, ge=1, description="shared negatives for loss='sampled'")
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_epochs: float = Field(1.0, ge=0.0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_frac: float = Field(0.02, ge=0.0, le=1.0)
    grad_clip: float | None = Field(1.0, gt=0.0)
    epochs: int = Field(
        30, ge=1, description="the cosine schedule's length; patience or a budget may stop sooner"
    )
    batch_size: int = Field(64, ge=1)
    window_stride: int | None = Field(
        None,
        ge=1,
        description="None: only each sequence's last max_len items; else "
        "windows of max_len ending every window_stride items back",
    )
    bf16: bool = False
    # run control
    time_budget_s: float | None = Field(
        None, gt=0.0, description="optional wall-clock cap; None trains every planned epoch"
    )
    fit_budget: bool = Field(True, description="shrink the epoch plan to fit the budget")
    patience: int | None = Field(
        3,
        ge=1,
        description="stop once validation NDCG@10 has not improved for this many validations "
        "in a row (the best validated weights are kept); None: never",
    )
    min_delta: float = Field(1e-3, ge=0.0, description="an improvement smaller is none")
    seed: int = 0
    threads: int | Literal["auto"] | None = Field(
        "auto",
        description="torch threads; 'auto' keeps whichever of all cores (2 here) or one "
        "trains faster, re-measured every other epoch; None leaves torch's default",
    )
    valid_users: int = Field(1000, ge=0)
    valid_every: int = Field(3, ge=1)
    fit_valid: bool = Field(
        True,
        description="also train on the validation items, except those of the valid_users "
        "users that validation watches: the model that serves the test items has then "
        "learnt from everything before them, as a deployed model would",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if isinstance(self.threads, int) and self.threads < 1:
            raise ValueError("threads must be >= 1, 'auto' or None")
        return self

    def arch(self, n_items: int) -> Arch:
        return Arch(
            n_items=n_items,
            hidden=self.hidden,
            blocks=self.blocks,
            heads=self.heads,
            ffn_dim=self.ffn_dim or self.hidden,
            max_len=self.max_len,
            ln_eps=self.ln_eps,
        )


def watched_users(
    train_seqs: Mapping[str, np.ndarray], valid: Mapping[str, int | None], cfg: TrainConfig
) -> list[str]:
    """The users whose validation items validation watches (a seeded sample of
    ``cfg.valid_users``); with ``cfg.fit_valid`` theirs are the only validation items kept
    out of training."""
    users = [u for u, v in valid.items() if v is not None and len(train_seqs.get(u, ())) > 0]
    if not users or cfg.valid_users == 0:
        return []
    rng = np.random.default_rng(cfg.seed + 7919)
    if len(users) > cfg.valid_users:
        users = [users[i] for i in sorted(rng.choice(len(users), cfg.valid_users, replace=False))]
    return users


def untrained_valid_users(
    meta: Mapping[str, Any], train_seqs: Mapping[str, np.ndarray], valid: Mapping[str, int | None]
) -> set[str]:
    """The users whose validation items a trained model (its ``meta``) has not seen: all of
    them for a model trained without ``fit_valid``, else the watched sample. Scripts that
    choose settings on validation items must keep to these."""
    saved = {k: v for k, v in (meta.get("config") or {}).items() if k in TrainConfig.model_fields}
    cfg = TrainConfig(**{**saved, "fit_valid": saved.get("fit_valid", False)})
    if cfg.fit_valid:
        return set(watched_users(train_seqs, valid, cfg))
    return {u for u, v in valid.items() if v is not None}
