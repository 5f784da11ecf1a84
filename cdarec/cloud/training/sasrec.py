"""Cloud side: SASRec training with PyTorch (imported lazily: importing this module never
imports torch).

The model is the architecture documented in ``cdarec.seqrec.sasrec``; training uses
next-item cross-entropy at every position, either over the full item set (``loss="full"``,
the default) or over the target plus ``n_negatives`` uniformly sampled items shared by the
batch (``loss="sampled"``). On two CPU cores the softmax over ML-1M's 3,883 items is most
of a step: an epoch cost about 26 s with the full softmax and about 11 s sampled, so the
10-minute budget fitted 22 full epochs or 47 sampled ones (the full softmax is now computed
in row chunks, ``_chunked_cross_entropy``: about 16 s an epoch, 37 epochs on Protocol B's
data, where more epochs than 24 no longer change validation). The full softmax still wins on
both protocols (measured 2026-11-27 with ``scripts/eval_sasrec.py``, same budget, seed 0):
Protocol A NDCG@10 (50-item history, all users) 77.65 -> 78.68; Protocol B HR@10 /
NDCG@10 on the ratings >= 3 10-core set 0.2389 / 0.1324 -> 0.2483 / 0.1362. AdamW with a one-epoch
linear warm-up and cosine (or linear) decay; batches come from length-sorted chunks so
padding stays small.

CPU-specific choices: dropout masks are slices of one pre-drawn pool (``nn.Dropout``'s
per-element Bernoulli draws cost about as much as the rest of the step), no dropout on
the attention weights by default, one additive attention mask per batch, and
``threads="auto"`` (see ``_ThreadTuner``).

How long: a fixed number of epochs (``cfg.epochs``, the cosine schedule's length), so a
slower machine trains the same model, later; training stops sooner only when validation
has converged - NDCG@10 not better by ``min_delta`` for ``patience`` validations in a row
- and then keeps the best validated weights. (It used to train to a 10-minute wall
clock: a fresh machine 1.5x slower got 16 epochs instead of 29 and Protocol A's
structured row fell from 79.32 to 78.69.) An optional ``time_budget_s`` still caps it:
the epoch plan is fitted to the budget after every epoch and the learning-rate decay
follows the plan; training also stops cleanly mid-epoch once the budget is spent.
Deterministic for a fixed seed and an integer thread count as long as no budget binds;
``meta`` records what ran (epochs, threads, per-epoch loss and validation, convergence).

Validation (optional, every ``valid_every`` epochs): NDCG@10 on a fixed sample of
``valid_users`` users' validation items under Protocol A (the validation item + 19
uniform random items, see ``cdarec.seqrec.metrics``), history = the training sequence.
With ``fit_valid`` (the default) every other user's validation item is trained on: the
model that ranks a test item has then learnt from everything before it, as a deployed
model would (Protocol B, test items, all users: SASRec alone HR@10 0.2543 -> 0.2649 and
with the transition model 0.2757 -> 0.2785, same budget; settings are still chosen on
the validation items of models trained without them, ``--set fit_valid=false``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cdarec.seqrec.config import TrainConfig, watched_users
from cdarec.seqrec.metrics import label_ranks, ndcg_at, sample_candidates
from cdarec.seqrec.sasrec import Arch, SASRecWeights

if TYPE_CHECKING:
    import torch


@dataclass
class TrainProgress:
    """What the progress callback receives (after every few batches and each epoch)."""

    epoch: int  # 1-based epoch in progress
    epochs: int
    batch: int
    batches: int
    loss: float  # running mean loss of the current epoch
    elapsed_s: float
    epoch_done: bool = False
    valid_ndcg10: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


ProgressFn = Callable[[TrainProgress], None]


# -- data ---------------------------------------------------------------------------------
def make_examples(
    train_seqs: Mapping[str, np.ndarray], max_len: int, window_stride: int | None
) -> list[np.ndarray]:
    """Windows (internal ids, i.e. item + 1) of at most ``max_len + 1`` items: the model
    reads ``w[:-1]`` and predicts ``w[1:]``."""
    out: list[np.ndarray] = []
    for seq in train_seqs.values():
        s = np.asarray(seq, dtype=np.int64) + 1
        if s.size < 2:
            continue
        end = s.size
        while True:
            start = max(0, end - max_len - 1)
            out.append(s[start:end])
            if window_stride is None or start == 0:
                break
            end -= window_stride
            if end < 2:
                break
    return out


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, sort by length within chunks of 32 batches, shuffle the batch order."""
    perm = rng.permutation(len(lengths))
    chunk = batch_size * 32
    batches: list[np.ndarray] = []
    for c in range(0, len(perm), chunk):
        part = perm[c : c + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def _pad_left(windows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    n_l = max(len(w) for w in windows) - 1
    inp = np.zeros((len(windows), n_l), dtype=np.int64)
    tgt = np.full((len(windows), n_l), -1, dtype=np.int64)
    for i, w in enumerate(windows):
        k = len(w) - 1
        inp[i, n_l - k :] = w[:-1]
        tgt[i, n_l - k :] = w[1:] - 1
    return inp, tgt


# -- loss ---------------------------------------------------------------------------------
def _chunked_cross_entropy() -> Any:
    """Full-softmax cross-entropy over the item table, computed in row chunks.

    Returns an autograd function ``f(h, emb, target, chunk)`` -> mean loss, equal (to float
    rounding) to ``F.cross_entropy(h @ emb.T, target)``. Why by hand: the stock path writes
    the (tokens x items) logits, then the log-softmax, then its gradient, each a full pass
    over a tensor of ~25M floats, and on two CPU cores those passes cost more than the
    matrix products. Here each chunk's logits stay in cache: the gradient (softmax minus
    one-hot) is formed in place during the forward pass and the two gradient products run
    there too, so backward is a multiply. One ML-1M step's loss: 0.24 s -> 0.13 s
    (7,000 targets x 3,124 items, d=64; same loss and gradients to 1e-6).
    """
    import torch

    class ChunkedCE(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, h: Any, emb: Any, target: Any, chunk: int) -> Any:
            n = h.shape[0]
            grad_h = torch.empty_like(h)
            grad_emb = torch.zeros_like(emb)
            total = h.new_zeros((), dtype=torch.float64)
            for s in range(0, n, chunk):
                hc, tc = h[s : s + chunk], target[s : s + chunk]
                logits = hc @ emb.T
                lse = torch.logsumexp(logits, dim=1)
                total += (lse - logits.gather(1, tc[:, None]).squeeze(1)).sum(dtype=torch.float64)
                p = logits.sub_(lse[:, None]).exp_()  # softmax, in place
                p[torch.arange(len(tc)), tc] -= 1.0
                p.div_(n)
                grad_h[s : s + chunk] = p @ emb
                grad_emb.addmm_(p.T, hc)
            ctx.save_for_backward(grad_h, grad_emb)
            return (total / max(n, 1)).to(h.dtype)

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> Any:
            grad_h, grad_emb = ctx.saved_tensors
            return grad_h * grad_out, grad_emb * grad_out, None, None

    return ChunkedCE.apply


# -- model --------------------------------------------------------------------------------
def _build_module(
    arch: Arch, dropout: float, attn_dropout: float = 0.0, seed: int = 0
) -> torch.nn.Module:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class PoolDropout(nn.Module):
        """Dropout whose masks are slices (at random offsets) of one pre-drawn pool.

        ``nn.Dropout`` draws a fresh Bernoulli per element, which on a CPU costs about as
        much as the rest of a SASRec step; reusing a 16M-element pool at random offsets
        regularises the same way at the cost of one multiply. Seeded, so deterministic.
        """

        pool: torch.Tensor

        def __init__(self, p: float, gen: torch.Generator, pool_size: int = 1 << 24) -> None:
            super().__init__()
            self.p, self.gen = p, gen
            if p > 0:
                keep = torch.rand(pool_size, generator=gen) >= p
                self.register_buffer("pool", keep.float() / (1.0 - p), persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.p == 0:
                return x
            n = x.numel()
            if n > self.pool.numel():
                return F.dropout(x, self.p, True)
            off = int(torch.randint(0, self.pool.numel() - n + 1, (1,), generator=self.gen))
            return x * self.pool[off : off + n].view_as(x)

    gen = torch.Generator().manual_seed(seed + 2)
    shared = PoolDropout(dropout, gen)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d, f = arch.hidden, arch.ffn_dim
            self.ln1 = nn.LayerNorm(d, eps=arch.ln_eps)
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.ln2 = nn.LayerNorm(d, eps=arch.ln_eps)
            self.ff1, self.ff2 = nn.Linear(d, f), nn.Linear(f, d)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            n_b, n_l, d = x.shape
            nh = arch.heads
            drop: Any = shared
            y = self.ln1(x)
            q, k, v = (
                m(y).view(n_b, n_l, nh, d // nh).transpose(1, 2) for m in (self.q, self.k, self.v)
            )
            p_attn = attn_dropout if self.training else 0.0
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_attn)
            x = x + drop(self.o(o.transpose(1, 2).reshape(n_b, n_l, d)))
            y = self.ln2(x)
            return x + drop(self.ff2(drop(F.gelu(self.ff1(y), approximate="tanh"))))

    class SASRec(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item_emb = nn.Embedding(arch.n_items + 1, arch.hidden, padding_idx=0)
            self.pos_emb = nn.Embedding(arch.max_len, arch.hidden)
            self.blocks = nn.ModuleList(Block() for _ in range(arch.blocks))
            self.lnf = nn.LayerNorm(arch.hidden, eps=arch.ln_eps)
            self.drop = shared
            for name, p in self.named_parameters():
                if name.endswith("emb.weight"):
                    nn.init.normal_(p, std=0.02)
                elif p.dim() == 2:
                    nn.init.xavier_uniform_(p)
            with torch.no_grad():
                self.item_emb.weight[0].zero_()

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            """(B, L) internal ids, right-aligned -> (B, L, hidden)."""
            n_l = ids.shape[1]
            pos = torch.arange(arch.max_len - n_l, arch.max_len, device=ids.device)
            x = self.drop(self.item_emb(ids) + self.pos_emb(pos)[None])
            causal = torch.ones(n_l, n_l, dtype=torch.bool, device=ids.device).tril()
            eye = torch.eye(n_l, dtype=torch.bool, device=ids.device)
            allowed = ((causal[None] & (ids != 0)[:, None, :]) | eye[None])[:, None]
            # Additive mask, built once for all blocks (a boolean one is converted per call).
            mask = torch.zeros(allowed.shape, dtype=x.dtype).masked_fill_(~allowed, -math.inf)
            for blk in self.blocks:
                x = blk(x, mask)
            return self.lnf(x)

    return SASRec()


def export_weights(module: torch.nn.Module, arch: Arch) -> dict[str, np.ndarray]:
    """Torch state -> runtime arrays (``x @ W + b``: linear weights transposed)."""

    def t(x: Any) -> np.ndarray:
        return x.detach().cpu().float().numpy().copy()

    m: Any = module
    p: dict[str, np.ndarray] = {
        "item_emb": t(m.item_emb.weight),
        "pos_emb": t(m.pos_emb.weight),
        "lnf_w": t(m.lnf.weight),
        "lnf_b": t(m.lnf.bias),
    }
    for i, blk in enumerate(m.blocks):
        g = f"b{i}."
        p[g + "ln1_w"], p[g + "ln1_b"] = t(blk.ln1.weight), t(blk.ln1.bias)
        p[g + "ln2_w"], p[g + "ln2_b"] = t(blk.ln2.weight), t(blk.ln2.bias)
        for name, lin in (("q", blk.q), ("k", blk.k), ("v", blk.v), ("o", blk.o)):
            p[g + "w" + name], p[g + "b" + name] = t(lin.weight).T.copy(), t(lin.bias)
        p[g + "w1"], p[g + "b1"] = t(blk.ff1.weight).T.copy(), t(blk.ff1.bias)
        p[g + "w2"], p[g + "b2"] = t(blk.ff2.weight).T.copy(), t(blk.ff2.bias)
    return p


def _lr_factor(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    decay = 0.5 * (1.0 + math.cos(math.pi * frac)) if cfg.schedule == "cosine" else 1.0 - frac
    return cfg.min_lr_frac + (1.0 - cfg.min_lr_frac) * decay


# -- validation ---------------------------------------------------------------------------
@dataclass
class _ValidSet:
    ids: np.ndarray  # (U, L) right-aligned histories, internal ids
    cands: np.ndarray  # (U, 20) item indices
    label_pos: np.ndarray  # (U,)


def fit_sequences(
    train_seqs: Mapping[str, np.ndarray],
    valid: Mapping[str, int | None],
    keep_out: Collection[str] = (),
) -> dict[str, np.ndarray]:
    """Each user's training sequence with the validation item appended (except for the
    ``keep_out`` users): everything before the test item."""
    out: dict[str, np.ndarray] = {}
    skip = set(keep_out)
    for u, seq in train_seqs.items():
        v = valid.get(u)
        out[u] = seq if v is None or u in skip else np.append(np.asarray(seq), v)
    return out


def _valid_set(
    train_seqs: Mapping[str, np.ndarray],
    valid: Mapping[str, int | None],
    users: list[str],
    n_items: int,
    cfg: TrainConfig,
) -> _ValidSet | None:
    """Protocol A candidates for the watched ``users``' validation items."""
    if not users:
        return None
    cands = sample_candidates(valid, n_items, users, n_neg=min(19, n_items - 1), seed=cfg.seed)
    hist = [np.asarray(train_seqs[u], dtype=np.int64)[-cfg.max_len :] + 1 for u in users]
    n_l = max(len(h) for h in hist)
    ids = np.zeros((len(users), n_l), dtype=np.int64)
    for i, h in enumerate(hist):
        ids[i, n_l - len(h) :] = h
    c = np.stack([cands[u] for u in users])
    label_pos = np.array([int(np.flatnonzero(cands[u] == valid[u])[0]) for u in users])
    return _ValidSet(ids=ids, cands=c, label_pos=label_pos)


def _validate(module: torch.nn.Module, vs: _ValidSet, batch: int = 256) -> float:
    import torch

    module.eval()
    emb: Any = module.item_emb.weight  # type: ignore[union-attr]
    scores = np.empty(vs.cands.shape, dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(vs.ids), batch):
            ids = torch.from_numpy(vs.ids[s : s + batch])
            keep = int((ids != 0).any(dim=0).float().argmax())  # drop all-padding columns
            h = module(ids[:, keep:])[:, -1]
            c = emb[torch.from_numpy(vs.cands[s : s + batch]) + 1]
            scores[s : s + batch] = torch.einsum("bd,bcd->bc", h, c).numpy()
    module.train()
    return ndcg_at(label_ranks(scores, vs.label_pos), (10,))[10]


# -- training -----------------------------------------------------------------------------
class _ThreadTuner:
    """Picks torch's thread count. With ``"auto"``, every ``every`` epochs the first
    batches alternate between the candidate counts (all usable cores, one), ``probe``
    batches each, and the fastest per target token is kept. On an idle two-core machine
    two threads win; when other work keeps a core busy (worse under ``nice``), every
    parallel region waits for the descheduled thread and one thread is several times
    faster."""

    def __init__(self, torch_mod: Any, threads: int | str | None, probe: int = 4, every: int = 2):
        self.torch, self.probe, self.every = torch_mod, probe, every
        self.auto = threads == "auto"
        if self.auto:
            n_cpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
            n_cpu = n_cpu or os.cpu_count() or 1
            self.candidates = [n_cpu, 1] if n_cpu > 1 else [1]
            self._set(self.candidates[0])
        elif isinstance(threads, int):
            self._set(threads)
        self.current = int(torch_mod.get_num_threads())
        self._cost: dict[int, list[float]] = {}

    def _set(self, n: int) -> None:
        self.torch.set_num_threads(n)
        self.current = n

    def _probing(self, epoch: int, b: int) -> bool:
        # Batch 1 is a warm-up (first calls pay one-off costs); then the candidates
        # alternate batch by batch so that a change in load hits them alike.
        return (
            self.auto
            and len(self.candidates) > 1
            and (epoch - 1) % self.every == 0
            and 2 <= b <= 1 + self.probe * len(self.candidates)
        )

    def before_batch(self, epoch: int, b: int) -> None:
        if self._probing(epoch, b):
            if b == 2:
                self._cost = {}
            n = self.candidates[(b - 2) % len(self.candidates)]
            if n != self.current:
                self._set(n)

    def after_batch(self, epoch: int, b: int, seconds: float, tokens: int) -> None:
        if not self._probing(epoch, b):
            return
        acc = self._cost.setdefault(self.current, [0.0, 0.0])
        acc[0] += seconds
        acc[1] += max(1, tokens)
        if b == 1 + self.probe * len(self.candidates):
            best = min(self._cost, key=lambda n: self._cost[n][0] / self._cost[n][1])
            self._set(best)


def _plan_epochs(
    cfg: TrainConfig,
    done: int,
    planned: int,
    elapsed: float,
    epoch_times: list[float],
    valid_s: float,
) -> int:
    """How many epochs in total fit the time budget, from the median of the last three
    epochs' durations (one slow epoch, e.g. the first, does not decide the plan). The
    plan may grow back (up to ``cfg.epochs``) only in its first half, so the learning
    rate is not raised again near the end of the decay."""
    if cfg.time_budget_s is None or not cfg.fit_budget or not epoch_times:
        return planned
    left = cfg.time_budget_s - elapsed
    per_epoch = float(np.median(epoch_times[-3:])) + valid_s / cfg.valid_every
    fit = done + int(max(0.0, left - valid_s) // max(per_epoch, 1e-9))
    cap = cfg.epochs if done <= planned // 2 else planned
    return max(done, min(cap, fit))


def train_sasrec(
    train_seqs: Mapping[str, np.ndarray],
    n_items: int,
    cfg: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    valid: Mapping[str, int | None] | None = None,
) -> SASRecWeights:
    """Train SASRec on per-user sequences (item indices, oldest first).

    ``valid`` maps users to their validation item (``split.valid``); with it, NDCG@10 under
    Protocol A on ``cfg.valid_users`` sampled users is computed every ``valid_every``
    epochs and reported to ``progress`` and in ``meta["history"]``; with
    ``cfg.fit_valid`` the other users' validation items are trained on (``fit_sequences``).

    Time budget: with ``fit_budget`` the epoch plan is revised after every epoch to the
    number of whole epochs that still fit (from the last epoch's duration), and the
    learning-rate decay follows the revised plan, so a slow machine trains fewer epochs
    but still anneals. Whatever the plan, training stops once the budget is spent (mid
    epoch if need be). Results are deterministic for a fixed seed and thread count as
    long as the budget does not bind (``meta["epochs_done"]`` records what ran).
    """
    import torch
    import torch.nn.functional as F

    cfg = cfg or TrainConfig()
    t0 = time.perf_counter()
    tuner = _ThreadTuner(torch, cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)

    vs = None
    if valid is not None:
        watched = watched_users(train_seqs, valid, cfg)
        vs = _valid_set(train_seqs, valid, watched, n_items, cfg)
        if cfg.fit_valid:
            train_seqs = fit_sequences(train_seqs, valid, watched)
    arch = cfg.arch(n_items)
    module = _build_module(arch, cfg.dropout, cfg.attn_dropout, cfg.seed)
    module.train()
    m: Any = module
    examples = make_examples(train_seqs, cfg.max_len, cfg.window_stride)
    if not examples:
        raise ValueError("no training sequence has two or more items")
    lengths = np.array([len(w) for w in examples])
    n_batches = math.ceil(len(examples) / cfg.batch_size)
    warmup = round(cfg.warmup_epochs * n_batches)
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        (no_decay if p.dim() < 2 or "pos_emb" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay}],
        lr=cfg.lr,
        betas=cfg.betas,
        weight_decay=0.0,
    )
    chunked_ce = _chunked_cross_entropy()

    def compute_loss(ids: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            h = module(ids)
            sel = target >= 0
            hs, ts = h[sel], target[sel]
            emb = m.item_emb.weight
            if cfg.loss == "full":
                if cfg.bf16:  # autocast's casts: the stock path
                    return F.cross_entropy((hs @ emb[1:].T).float(), ts), len(ts)
                return chunked_ce(hs, emb[1:], ts, 1024), len(ts)
            neg = torch.randint(0, n_items, (cfg.n_negatives,), generator=gen)
            pos_logit = (hs * emb[ts + 1]).sum(-1, keepdim=True).float()
            # A sampled negative that is the row's own target is no negative.
            neg_logit = (hs @ emb[neg + 1].T).float()
            neg_logit = neg_logit.masked_fill(neg[None] == ts[:, None], -1e9)
            logits = torch.cat([pos_logit, neg_logit], dim=1)
            return F.cross_entropy(logits, torch.zeros_like(ts)), len(ts)

    history: list[dict[str, Any]] = []
    epoch_times: list[float] = []
    planned = cfg.epochs
    step, stopped, epochs_done, valid_s = 0, False, 0.0, 0.0
    # Convergence: the best validated weights, and validations since they improved.
    best_ndcg, best_epoch, best_state, flat = -1.0, 0, None, 0
    converged = False
    epoch = 0
    while epoch < planned and not stopped and not converged:
        epoch += 1
        t_epoch = time.perf_counter()
        batches = _batches(lengths, cfg.batch_size, rng)
        loss_sum, loss_n, b = 0.0, 0, 0
        for b, idx in enumerate(batches, 1):
            tuner.before_batch(epoch, b)
            t_batch = time.perf_counter()
            total = planned * n_batches
            for group in opt.param_groups:
                group["lr"] = cfg.lr * _lr_factor(step, total, warmup, cfg)
            inp, tgt = _pad_left([examples[i] for i in idx])
            loss, n_tok = compute_loss(torch.from_numpy(inp), torch.from_numpy(tgt))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * n_tok
            loss_n += n_tok
            tuner.after_batch(epoch, b, time.perf_counter() - t_batch, n_tok)
            elapsed = time.perf_counter() - t0
            if progress is not None and (b % 10 == 0 or b == len(batches)):
                progress(TrainProgress(epoch, planned, b, len(batches), loss_sum / loss_n, elapsed))
            if cfg.time_budget_s is not None and elapsed > cfg.time_budget_s:
                stopped = b < len(batches) or epoch < planned
                break
        with torch.no_grad():
            m.item_emb.weight[0].zero_()
        epochs_done = epoch - 1 + b / len(batches)
        epoch_s = time.perf_counter() - t_epoch
        rec: dict[str, Any] = {
            "epoch": epoch,
            "loss": loss_sum / max(1, loss_n),
            "lr": opt.param_groups[0]["lr"],
            "epoch_s": round(epoch_s, 2),
            "threads": tuner.current,
        }
        if vs is not None and (epoch % cfg.valid_every == 0 or epoch == planned or stopped):
            t_valid = time.perf_counter()
            rec["valid_ndcg10"] = _validate(module, vs)
            valid_s = time.perf_counter() - t_valid
            if rec["valid_ndcg10"] > best_ndcg + cfg.min_delta:
                best_ndcg, best_epoch, flat = rec["valid_ndcg10"], epoch, 0
                if cfg.patience is not None:
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                flat += 1
                best_ndcg = max(best_ndcg, rec["valid_ndcg10"])
                converged = cfg.patience is not None and flat >= cfg.patience
        rec["elapsed_s"] = round(time.perf_counter() - t0, 2)
        if not stopped:
            epoch_times.append(epoch_s)
            planned = _plan_epochs(
                cfg, epoch, planned, time.perf_counter() - t0, epoch_times, valid_s if vs else 0.0
            )
        rec["planned_epochs"] = planned
        history.append(rec)
        if progress is not None:
            progress(
                TrainProgress(
                    epoch,
                    planned,
                    len(batches),
                    len(batches),
                    rec["loss"],
                    time.perf_counter() - t0,
                    epoch_done=True,
                    valid_ndcg10=rec.get("valid_ndcg10"),
                    history=list(history),
                )
            )

    restored = False
    if best_state is not None and history and history[-1].get("valid_ndcg10", -1.0) < best_ndcg:
        # Validation fell since its best: serve the best validated weights.
        module.load_state_dict(best_state)
        restored = True
    module.eval()
    meta = {
        "config": cfg.model_dump(mode="json"),
        "epochs_done": round(float(epochs_done), 3),
        "epochs_planned": planned,
        # The budget cut the plan below cfg.epochs / stopped training mid-way.
        "budget_bound": stopped or planned < cfg.epochs,
        "stopped_by_budget": stopped,
        # Validation stopped improving (cfg.patience validations in a row) before the plan.
        "converged": converged,
        "best_valid_epoch": best_epoch or None,
        "restored_best": restored,
        "train_s": round(time.perf_counter() - t0, 2),
        "n_examples": len(examples),
        "history": history,
        "torch": torch.__version__,
    }
    weights = SASRecWeights(arch=arch, params=export_weights(module, arch), meta=meta)
    weights.validate()
    return weights
