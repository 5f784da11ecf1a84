"""Dev script: train (or load) SASRec and report Protocol A on every test user.

    nice -n 10 .venv/bin/python scripts/eval_sasrec.py [--dataset ml-1m] \\
        [--set lr=3e-3 --set epochs=20 ...] [--model PATH | --cache] [--out PATH] \\
        [--json]

Protocol A (LLMRank): candidates = test item + 19 uniform random items (seeded, only the
test item excluded), history = everything before the test item (validation included),
NDCG@1/5/10/20 x 100. Reported for a 50-item and the full (up to max_len) history, with
and without seen demotion (watched candidates ranked last).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cdarec.cloud.training.sasrec import TrainProgress
from cdarec.data import history_before_test, leave_one_out, load_dataset
from cdarec.seqrec.config import TrainConfig, untrained_valid_users
from cdarec.seqrec.metrics import demote_seen, label_ranks, ndcg_at, sample_candidates
from cdarec.seqrec.sasrec import SASRecModel


def _parse_set(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for it in items:
        key, _, raw = it.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def evaluate(
    model: SASRecModel, ds, *, seed: int = 0, history_lens: tuple[int | None, ...] = (50, None)
) -> dict[str, dict[int, float]]:
    split = leave_one_out(ds)
    users = split.test_users()
    cands = sample_candidates(split.test, ds.n_items, users, seed=seed)
    c = np.stack([cands[u] for u in users])
    label_pos = np.array([int(np.flatnonzero(cands[u] == split.test[u])[0]) for u in users])
    full = [np.asarray(history_before_test(ds, u), dtype=np.int64) for u in users]
    rows = np.arange(len(users))[:, None]
    out: dict[str, dict[int, float]] = {}
    for hl in history_lens:
        t = time.perf_counter()
        hist = [h[-hl:] if hl else h for h in full]
        scores = model.scores_batch(hist)
        cs = scores[rows, c]
        dt = time.perf_counter() - t
        name = f"hist={hl or 'full'}"
        out[name] = ndcg_at(label_ranks(cs, label_pos))
        out[name]["eval_s"] = round(dt, 2)
        # Seen demotion looks at the full private history, whatever the model reads.
        demoted = np.stack(
            [demote_seen(s.copy(), h)[cc] for s, h, cc in zip(scores, full, c, strict=True)]
        )
        out[name + " +demote"] = ndcg_at(label_ranks(demoted, label_pos))
    return out


def evaluate_full(model: SASRecModel, ds, on: str = "test") -> dict[str, dict[str, float]]:
    """Protocol B's sasrec rows: full ranking over items outside the history. ``on="valid"``
    ranks each user's validation item after the training items instead (for choosing
    settings without looking at the test items; for a model trained with ``fit_valid``,
    only the watched users', the others' validation items having been trained on)."""
    from cdarec.evaluation.protocols.full import _rank_of_label, metrics, structured_row
    from cdarec.seqrec.structured import structured_blend
    from cdarec.seqrec.transition import TransitionModel

    split = leave_one_out(ds)
    if on == "valid":
        users = [u for u in split.test_users() if split.valid.get(u) is not None]
        clean = untrained_valid_users(model.meta, split.train, split.valid)
        users = [u for u in users if u in clean]
        full = [np.asarray(split.train[u], dtype=np.int64) for u in users]
        labels = [int(split.valid[u]) for u in users]  # type: ignore[arg-type]
        print(f"validation rows: {len(users)} users whose validation item is untrained")
    else:
        users = split.test_users()
        full = [np.asarray(history_before_test(ds, u), dtype=np.int64) for u in users]
        labels = [int(ds.sequence(u)[-1]) for u in users]
    tm = TransitionModel.fit(split.train, ds.n_items)
    blend = structured_blend(model)
    out: dict[str, dict[str, float]] = {}
    blended: list[int] = []  # the full-history pass also gives the +transition blend
    for hl in (50, None):
        ranks = []
        for start in range(0, len(users), 256):
            part = slice(start, start + 256)
            hist = [h[-hl:] if hl else h for h in full[part]]
            batch = model.scores_batch(hist)
            for row, h, y in zip(batch, full[part], labels[part], strict=True):
                ranks.append(_rank_of_label(row, h, y))
                if hl is None:
                    row = structured_row(row, tm.scores(h), h, blend)
                    blended.append(_rank_of_label(row, h, y))
        hr, nd = metrics(np.array(ranks))
        out[f"{on} full hist={hl or 'full'}"] = {"HR@10": hr, "NDCG@10": nd}
    hr, nd = metrics(np.array(blended))
    out[f"{on} full +transition"] = {"HR@10": hr, "NDCG@10": nd}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--home", default=str(Path.home() / ".cache" / "cdarec"))
    ap.add_argument("--set", action="append", default=[], help="TrainConfig field=value")
    ap.add_argument("--model", help="load this .npz instead of training")
    ap.add_argument("--out", help="save the trained model here")
    ap.add_argument("--seed", type=int, default=0, help="candidate sampling seed")
    ap.add_argument(
        "--cache",
        action="store_true",
        help="train through train_or_load (cached under HOME/models, progress bar)",
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--protocol", choices=["llmrank", "full"], default="llmrank", help="A (20) or B (full)"
    )
    args = ap.parse_args()

    ds = load_dataset(args.dataset, Path(args.home))
    if args.model:
        model = SASRecModel.load(args.model)
    elif args.cache:
        from cdarec.cloud.training.train import train_or_load

        model = train_or_load(ds, Path(args.home), TrainConfig(**_parse_set(args.set)))
    else:
        cfg = TrainConfig(**_parse_set(args.set))
        print("config:", cfg.model_dump_json(), flush=True)
        split = leave_one_out(ds)
        from cdarec.cloud.training.sasrec import train_sasrec

        def progress(p: TrainProgress) -> None:
            if p.epoch_done:
                v = f" valid N@10 {100 * p.valid_ndcg10:.2f}" if p.valid_ndcg10 is not None else ""
                print(
                    f"epoch {p.epoch}/{p.epochs} loss {p.loss:.4f}{v} {p.elapsed_s:.0f}s",
                    flush=True,
                )

        weights = train_sasrec(split.train, ds.n_items, cfg, progress=progress, valid=split.valid)
        model = SASRecModel(weights)
        if args.out:
            model.save(args.out)
    if args.protocol == "full":  # the transition weight the device would use
        from cdarec.seqrec.structured import with_transition_blend

        model = with_transition_blend(model, ds)
    meta = model.meta
    print(
        f"train: {meta.get('epochs_done')} epochs, {meta.get('train_s')} s, "
        f"budget_bound={meta.get('budget_bound')}, "
        f"threads={[h.get('threads') for h in meta.get('history', [])]}",
        flush=True,
    )
    if args.protocol == "full":
        print(
            f"transition weight {meta['transition_blend']} (validation NDCG@10, "
            f"{meta['transition_blend_users']} users): {meta.get('transition_blend_sweep')}"
        )
        for name, m in [
            *evaluate_full(model, ds, "valid").items(),
            *evaluate_full(model, ds).items(),
        ]:
            print(f"{name:<22} HR@10 {m['HR@10']:.4f}  NDCG@10 {m['NDCG@10']:.4f}")
        return 0
    t = time.perf_counter()
    res = evaluate(model, ds, seed=args.seed)
    total = time.perf_counter() - t
    for name, m in res.items():
        cells = "  ".join(f"N@{k} {100 * v:6.2f}" for k, v in m.items() if isinstance(k, int))
        extra = f"  (scoring {m['eval_s']} s)" if "eval_s" in m else ""
        print(f"{name:<22} {cells}{extra}")
    print(f"eval wall (all variants, {len(leave_one_out(ds).test_users())} users): {total:.1f} s")
    if args.json:
        print(
            json.dumps(
                {
                    "meta": meta,
                    "results": {k: {str(a): b for a, b in v.items()} for k, v in res.items()},
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
