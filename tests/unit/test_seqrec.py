from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from cdarec.cloud.training.sasrec import _build_module, export_weights, train_sasrec
from cdarec.seqrec.config import TrainConfig
from cdarec.seqrec.metrics import (
    demote_seen,
    hit_at,
    label_ranks,
    ndcg_at,
    sample_candidates,
)
from cdarec.seqrec.sasrec import SASRecModel, SASRecWeights

torch = pytest.importorskip("torch")


def _tiny(n_items: int = 30, **kw) -> tuple[object, SASRecModel]:
    cfg = TrainConfig(hidden=16, blocks=2, heads=2, ffn_dim=24, max_len=12, dropout=0.0, **kw)
    arch = cfg.arch(n_items)
    torch.manual_seed(0)
    module = _build_module(arch, 0.0)
    with torch.no_grad():  # non-trivial LayerNorm parameters and biases
        for name, p in module.named_parameters():
            if name.endswith("bias") or "ln" in name:
                p.add_(0.1 * torch.randn_like(p))
        module.item_emb.weight.mul_(20.0)
    module.eval()
    return module, SASRecModel(SASRecWeights(arch, export_weights(module, arch)))


def _torch_last(module, history: np.ndarray, max_len: int) -> np.ndarray:
    ids = torch.from_numpy(np.asarray(history[-max_len:], dtype=np.int64) + 1)[None]
    with torch.no_grad():
        return module(ids)[0, -1].numpy()


# -- runtime vs torch -----------------------------------------------------------------------
def test_numpy_forward_matches_torch() -> None:
    module, model = _tiny()
    rng = np.random.default_rng(1)
    histories = [rng.integers(0, 30, size=n) for n in (1, 3, 12, 20, 7)]
    batch = model.scores_batch(histories)
    for h, row in zip(histories, batch, strict=True):
        hv = _torch_last(module, h, 12)
        ref = hv @ module.item_emb.weight[1:].detach().numpy().T
        assert np.allclose(model.user_vector(h), hv, atol=1e-4)
        assert np.allclose(row, ref, atol=1e-4)
        assert np.allclose(model.scores(h), ref, atol=1e-4)
    assert model.item_vectors().shape == (30, 16)
    assert model.scores(np.array([], dtype=np.int64)).shape == (30,)


def test_left_padding_in_a_batch_does_not_change_scores() -> None:
    _, model = _tiny()
    short, long = np.array([3, 4]), np.arange(10)
    assert np.allclose(model.scores_batch([short, long])[0], model.scores(short), atol=1e-5)


def test_history_out_of_range_is_an_error() -> None:
    _, model = _tiny()
    with pytest.raises(ValueError, match="outside"):
        model.scores(np.array([30]))


# -- persistence ----------------------------------------------------------------------------
def test_save_load_roundtrip(tmp_path) -> None:
    _, model = _tiny()
    model.weights.meta["note"] = "x"
    model.save(tmp_path / "m.npz")
    loaded = SASRecModel.load(tmp_path / "m.npz")
    h = np.array([1, 2, 3])
    assert np.array_equal(loaded.scores(h), model.scores(h))
    assert loaded.arch == model.arch and loaded.meta["note"] == "x"


def test_corrupted_or_foreign_file_is_a_value_error(tmp_path) -> None:
    _, model = _tiny()
    path = tmp_path / "m.npz"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="SASRec"):
        SASRecModel.load(path)
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a cdarec SASRec model"):
        SASRecModel.load(path)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"not a \.npz"):
        SASRecModel.load(path)
    # Right header, wrong weights.
    model.save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["pos_emb"] = arrays["pos_emb"][:3]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="pos_emb"):
        SASRecModel.load(path)


def test_runtime_does_not_import_torch() -> None:
    code = (
        "import sys; import cdarec.seqrec, cdarec.seqrec.sasrec, cdarec.seqrec.metrics; "
        "import cdarec.cloud.training.train; assert 'torch' not in sys.modules"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


# -- metrics --------------------------------------------------------------------------------
def test_ndcg_and_hit_hand_computed() -> None:
    assert ndcg_at(np.array([0]), (1, 10)) == {1: 1.0, 10: 1.0}
    assert ndcg_at(np.array([1]), (1, 5))[5] == pytest.approx(1 / math.log2(3))
    assert ndcg_at(np.array([1]), (1,))[1] == 0.0
    assert ndcg_at(np.array([10]), (10,))[10] == 0.0
    assert ndcg_at(np.array([9]), (10,))[10] == pytest.approx(1 / math.log2(11))
    assert ndcg_at(np.array([0, 2]), (5,))[5] == pytest.approx((1 + 0.5) / 2)
    assert hit_at(np.array([0, 4, 5]), (1, 5)) == {1: pytest.approx(1 / 3), 5: pytest.approx(2 / 3)}


def test_ranks_break_ties_against_the_label() -> None:
    s = np.array([[0.5, 0.9, 0.1], [0.5, 0.5, 0.5], [1.0, 0.2, 0.3], [np.nan, 1.0, 0.0]])
    assert label_ranks(s, np.array([0, 1, 0, 0])).tolist() == [1, 2, 0, 2]


def test_demote_seen_moves_history_below_keeping_order() -> None:
    s = np.array([5.0, 4.0, 3.0, 2.0, -1.0])
    demote_seen(s, np.array([0, 1, 1]))
    assert np.argsort(-s).tolist() == [2, 3, 4, 0, 1]


# -- candidates -----------------------------------------------------------------------------
def test_candidate_sampling() -> None:
    targets = {f"u{i}": i % 50 for i in range(200)} | {"none": None}
    a = sample_candidates(targets, 50, seed=3)
    assert "none" not in a and len(a) == 200
    assert all(
        a[u].tolist() == c.tolist() for u, c in sample_candidates(targets, 50, seed=3).items()
    )
    assert any(
        a[u].tolist() != c.tolist() for u, c in sample_candidates(targets, 50, seed=4).items()
    )
    assert sample_candidates(targets, 50, ["u7"], seed=3)["u7"].tolist() == a["u7"].tolist()
    positions = []
    for u, c in a.items():
        assert c.shape == (20,) and len(set(c.tolist())) == 20
        assert (c == targets[u]).sum() == 1
        positions.append(int(np.flatnonzero(c == targets[u])[0]))
    assert len(set(positions)) > 10  # label position is shuffled
    # Negatives cover every item but the label (nothing else is excluded).
    counts = np.zeros(50)
    for _ in range(30):
        for c in sample_candidates({"u": 0}, 50, seed=_).values():
            counts[c] += 1
    assert counts[0] == 30 and (counts[1:] > 0).sum() > 40
    with pytest.raises(ValueError):
        sample_candidates({"u": 0}, 10, n_neg=10)


# -- training -------------------------------------------------------------------------------
# One thread: on a loaded two-core machine, two threads of tiny ops mostly wait on each other.
def test_training_learns_a_cycle_and_is_deterministic() -> None:
    n = 12
    rng = np.random.default_rng(0)
    train = {f"u{i}": (rng.integers(0, n) + np.arange(rng.integers(8, 30))) % n for i in range(64)}
    valid = {u: int((s[-1] + 1) % n) for u, s in train.items()}
    cfg = TrainConfig(
        hidden=16,
        heads=2,
        max_len=10,
        epochs=12,
        batch_size=16,
        lr=5e-3,
        dropout=0.0,
        window_stride=5,
        valid_users=32,
        time_budget_s=60,
        threads=1,
    )
    seen = []
    w = train_sasrec(train, n, cfg, progress=seen.append, valid=valid)
    assert [p.epoch for p in seen if p.epoch_done] == list(range(1, 13))
    assert w.meta["history"][-1]["valid_ndcg10"] > 0.95
    model = SASRecModel(w)
    for start in range(n):
        hist = (start + np.arange(6)) % n
        assert int(np.argmax(model.scores(hist))) == (start + 6) % n
    w2 = train_sasrec(train, n, cfg, valid=valid)
    assert all(np.array_equal(w.params[k], w2.params[k]) for k in w.params)
    # Without fit_valid the validation items only watch: training is as without them.
    no_fit = cfg.model_copy(update={"fit_valid": False})
    w3, w4 = train_sasrec(train, n, no_fit, valid=valid), train_sasrec(train, n, no_fit)
    assert all(np.array_equal(w3.params[k], w4.params[k]) for k in w.params)
    assert not all(np.array_equal(w.params[k], w3.params[k]) for k in w.params)
    sampled = train_sasrec(
        train, n, cfg.model_copy(update={"loss": "sampled", "n_negatives": 6, "epochs": 6})
    )
    assert int(np.argmax(SASRecModel(sampled).scores(np.arange(5)))) == 5


def test_time_budget_stops_cleanly() -> None:
    train = {f"u{i}": np.arange(20) % 7 for i in range(32)}
    cfg = TrainConfig(hidden=8, max_len=8, epochs=1000, batch_size=4, time_budget_s=0.5, threads=1)
    w = train_sasrec(train, 7, cfg)
    # Either the epoch plan shrank to fit or training stopped mid-epoch (or both).
    assert w.meta["budget_bound"] and w.meta["epochs_done"] < 1000
    assert w.meta["train_s"] < 5
    SASRecModel(w).scores(np.array([1, 2]))


def test_training_stops_when_validation_converges() -> None:
    """A fixed epoch plan, cut short once validation stops improving (every validation
    after the first counts as flat here: min_delta above any possible gain), and the
    best validated weights are the ones returned."""
    rng = np.random.default_rng(3)
    n = 12
    train = {f"u{i}": rng.integers(0, n, 15) for i in range(48)}
    valid = {u: int(rng.integers(0, n)) for u in train}  # unlearnable: noise only
    cfg = TrainConfig(
        hidden=8, max_len=8, epochs=40, batch_size=8, valid_users=48, valid_every=1,
        patience=2, min_delta=0.5, threads=1,
    )  # fmt: skip
    w = train_sasrec(train, n, cfg, valid=valid)
    meta = w.meta
    assert meta["converged"] and meta["epochs_done"] == 3 and meta["best_valid_epoch"] == 1
    assert not meta["budget_bound"] and meta["epochs_planned"] == 40
    scores = [h["valid_ndcg10"] for h in meta["history"]]
    assert meta["restored_best"] == (scores[-1] < max(scores))
    # Without patience the plan runs to its end.
    full = train_sasrec(
        train, n, cfg.model_copy(update={"patience": None, "epochs": 5}), valid=valid
    )
    assert not full.meta["converged"] and full.meta["epochs_done"] == 5


def test_the_default_plan_is_epochs_not_a_wall_clock() -> None:
    cfg = TrainConfig()
    assert cfg.time_budget_s is None and cfg.epochs >= 25 and cfg.patience


def test_epoch_plan_fits_the_budget() -> None:
    from cdarec.cloud.training.sasrec import _plan_epochs

    cfg = TrainConfig(time_budget_s=100, epochs=50)
    # 10 s used, 9 s per epoch (+1 s validation every 5th epoch): 9 more epochs fit.
    assert _plan_epochs(cfg, 1, 50, 10.0, [9.0], 1.0) == 10
    assert _plan_epochs(cfg, 3, 50, 99.0, [9.0], 0.0) == 3  # nothing more fits
    # The median of the last three epochs ignores one slow epoch.
    assert _plan_epochs(cfg, 3, 50, 28.0, [20.0, 4.0, 4.0], 0.0) == 21
    # Growing back is allowed in the first half of the plan only.
    assert _plan_epochs(cfg, 2, 10, 10.0, [1.0, 1.0], 0.0) == 50
    assert _plan_epochs(cfg, 6, 10, 10.0, [1.0, 1.0], 0.0) == 10
    assert _plan_epochs(cfg.model_copy(update={"fit_budget": False}), 1, 50, 10, [9], 1) == 50


def test_chunked_cross_entropy_matches_the_stock_loss() -> None:
    import torch
    import torch.nn.functional as F

    from cdarec.cloud.training.sasrec import _chunked_cross_entropy

    g = torch.Generator().manual_seed(0)
    h = torch.randn(37, 8, generator=g, requires_grad=True)
    emb = torch.randn(11, 8, generator=g, requires_grad=True)
    t = torch.randint(0, 11, (37,), generator=g)
    ref = F.cross_entropy(h @ emb.T, t)
    ref_grads = torch.autograd.grad(3.0 * ref, (h, emb))
    for chunk in (5, 37, 100):  # uneven last chunk, one chunk, chunk larger than the rows
        loss = _chunked_cross_entropy()(h, emb, t, chunk)
        grads = torch.autograd.grad(3.0 * loss, (h, emb))
        assert torch.allclose(loss, ref, atol=1e-6)
        for a, b in zip(grads, ref_grads, strict=True):
            assert torch.allclose(a, b, atol=1e-6)


def test_fit_valid_trains_on_every_validation_item_but_the_watched_ones() -> None:
    from cdarec.cloud.training.sasrec import fit_sequences
    from cdarec.seqrec.config import untrained_valid_users, watched_users

    train = {f"u{i}": np.arange(i % 5 + 1) for i in range(40)}
    valid: dict[str, int | None] = {u: 9 for u in train}
    valid["u3"] = None  # two-item user: nothing to add
    cfg = TrainConfig(valid_users=10)
    watched = watched_users(train, valid, cfg)
    assert len(watched) == 10 and "u3" not in watched
    assert watched == watched_users(train, valid, cfg)  # seeded
    fit = fit_sequences(train, valid, watched)
    for u, seq in train.items():
        if u in watched or valid[u] is None:
            assert fit[u].tolist() == seq.tolist()
        else:
            assert fit[u].tolist() == [*seq.tolist(), 9]
    # Without a validation sample to watch, every validation item is trained on.
    assert watched_users(train, valid, TrainConfig(valid_users=0)) == []
    # Tuning scripts keep to the validation items the model has not seen.
    meta = {"config": cfg.model_dump(mode="json")}
    assert untrained_valid_users(meta, train, valid) == set(watched)
    off = {"config": cfg.model_copy(update={"fit_valid": False}).model_dump(mode="json")}
    assert untrained_valid_users(off, train, valid) == {u for u in train if u != "u3"}
    old = {"config": {k: v for k, v in off["config"].items() if k != "fit_valid"}}
    assert untrained_valid_users(old, train, valid) == untrained_valid_users(off, train, valid)
