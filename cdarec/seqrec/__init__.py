"""A self-attentive sequential recommender (SASRec family), trained on the cloud with
PyTorch and run on the device with NumPy.

``runtime`` (NumPy only) is what the device imports; ``sasrec`` (PyTorch, imported
lazily) trains the weights; ``protocol`` holds the evaluation protocol's candidate
sampling and metrics; ``train_cli`` caches trained models under ``home/models``.
Importing this package never imports torch.
"""

from cdarec.seqrec.protocol import (
    demote_seen,
    hit_at,
    label_ranks,
    ndcg_at,
    sample_candidates,
)
from cdarec.seqrec.runtime import FORMAT_VERSION, SASRecModel, SASRecWeights
from cdarec.seqrec.sasrec import TrainConfig, TrainProgress
from cdarec.seqrec.train_cli import model_path, train_or_load

__all__ = [
    "FORMAT_VERSION",
    "SASRecModel",
    "SASRecWeights",
    "TrainConfig",
    "TrainProgress",
    "demote_seen",
    "hit_at",
    "label_ranks",
    "model_path",
    "ndcg_at",
    "sample_candidates",
    "train_or_load",
]
