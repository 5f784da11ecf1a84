"""How the device's ranking signals should be mixed, chosen on the validation split.

For every ML-1M user: the history before the validation item, the validation item plus
19 uniform negatives (seed 7, not the test seed), and NDCG@10 of z-score mixtures of
SASRec, the transition model, log-popularity and the embedding similarity to the mean
of the last 20 watched items. Watched items are ranked last, as on the device. Chose
the fallback ``TRANSITION_BLEND`` in cdarec/device/ranking.py (the weight the device
uses is chosen per model when it is trained, in full ranking: ``choose_transition_blend``
in cdarec/cloud/training/train.py; this is the 20-candidate view of the same question);
never looks at the test items, and keeps to the users whose validation items the served
SASRec did not train on.

    .venv/bin/python scripts/tune_fusion.py [--dataset ml-1m]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from cdarec.data import leave_one_out
from cdarec.graph.runtime import Resources
from cdarec.seqrec.config import untrained_valid_users
from cdarec.seqrec.metrics import label_ranks, ndcg_at, sample_candidates
from cdarec.settings import Settings


def z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-1m")
    args = ap.parse_args()
    res = Resources(Settings(dataset=args.dataset))
    ds = res.dataset
    split = leave_one_out(ds)
    model, tm = res.sasrec_model(), res.device.transition_model
    clean = untrained_valid_users(model.meta, split.train, split.valid)
    users = [u for u in split.valid_users() if len(split.train[u]) and u in clean]
    cands = sample_candidates(split.valid, ds.n_items, users, seed=7)
    C = np.stack([cands[u] for u in users])
    lab = np.array([int(np.flatnonzero(cands[u] == split.valid[u])[0]) for u in users])
    pop = np.zeros(ds.n_items)
    for seq in split.train.values():
        np.add.at(pop, seq, 1.0)
    seq_s = np.empty(C.shape)
    for st in range(0, len(users), 256):
        part = users[st : st + 256]
        sc = model.scores_batch([split.train[u] for u in part])
        seq_s[st : st + len(part)] = np.take_along_axis(sc, C[st : st + len(part)], 1)
    tr = np.stack([tm.scores(split.train[u])[C[i]] for i, u in enumerate(users)])
    texts = [f"{it.label()}. Genres: {', '.join(it.genres)}." for it in ds.items]
    E = res.device.device_embedder.embed_array(texts)
    prof = np.stack([E[split.train[u][-20:]].mean(0) for u in users])
    prof /= np.linalg.norm(prof, axis=1, keepdims=True)
    sem = np.einsum("ud,ucd->uc", prof, E[C])
    lp = np.log1p(pop[C])
    seen = np.stack([np.isin(c, split.train[u]) for u, c in zip(users, C, strict=True)])

    def nd(sc: np.ndarray) -> float:
        return 100 * ndcg_at(label_ranks(sc - 1e6 * seen, lab), (10,))[10]

    print(f"{len(users)} validation users")
    print(
        f"alone: sasrec {nd(seq_s):.2f}  transition {nd(tr):.2f}  pop {nd(lp):.2f}  "
        f"history-embedding {nd(sem):.2f}"
    )
    grid = []
    for a, b, c in itertools.product(
        (0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5), (0, 0.05, 0.1), (0, 0.05, 0.1)
    ):
        grid.append((nd(z(seq_s) + a * z(tr) + b * z(lp) + c * z(sem)), a, b, c))
    grid.sort(reverse=True)
    print("best mixtures: NDCG@10, transition, pop, history-embedding weights (SASRec = 1)")
    for row in grid[:8]:
        print("  {:.2f}  {:.2f}  {:.2f}  {:.2f}".format(*row))
    for a in (0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.5):
        print(f"  sasrec + {a} transition: {nd(z(seq_s) + a * z(tr)):.2f}")


if __name__ == "__main__":
    main()
