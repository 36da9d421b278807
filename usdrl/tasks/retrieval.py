"""kNN retrieval (§6.3): nearest gallery neighbours of each query by chunked matrix products.

The similarity matrix is computed block by block (``chunk_size`` queries x ``chunk_size``
gallery items) and merged into a running top-k, so memory is ``O(chunk_size^2 + Nq k)``
whatever the gallery size. Inputs are torch tensors or numpy arrays; outputs are torch
tensors on the compute device (the query tensor's device unless ``device`` is given).
"""

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

logger = logging.getLogger(__name__)

METRICS = ("cosine", "dot", "euclidean")


def _tensor(x, name: str, ndim: int) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != ndim:
        raise InputError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    return t


def _similarity(q: torch.Tensor, g: torch.Tensor, metric: str) -> torch.Tensor:
    """``(nq, ng)`` similarities of prepared blocks: dot product, or minus the Euclidean distance."""
    if metric == "euclidean":
        return -torch.cdist(q, g)
    return q @ g.T


def _prepare(x: torch.Tensor, metric: str, device, dtype) -> torch.Tensor:
    x = x.to(device=device, dtype=dtype)
    return F.normalize(x, dim=1) if metric == "cosine" else x


def nearest_neighbours(
    query, gallery, k: int = 1, *, chunk_size: int = 4096, metric: str = "cosine", device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(Nq, k)`` int64 and similarities ``(Nq, k)`` of the k most similar gallery items.

    ``query`` ``(Nq, D)``, ``gallery`` ``(Ng, D)``. Metrics: ``"cosine"`` (rows
    L2-normalised, then dot product; sklearn's cosine kNN ranks the same), ``"dot"``, and
    ``"euclidean"`` (similarity = minus the distance). Neighbours are sorted by decreasing
    similarity; equal similarities rank the lower gallery index first (stable sorts).
    Computation is in float32 (float64 if the query is float64).
    """
    if metric not in METRICS:
        raise InputError(f"metric must be one of {METRICS}, got {metric!r}")
    query, gallery = _tensor(query, "query", 2), _tensor(gallery, "gallery", 2)
    if query.shape[1] != gallery.shape[1]:
        raise InputError(f"query and gallery must have the same feature size, "
                         f"got {query.shape[1]} and {gallery.shape[1]}")
    if not 1 <= k <= gallery.shape[0]:
        raise InputError(f"k must be in 1..{gallery.shape[0]} (the gallery size), got {k}", keywords=("k",))
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
    device = torch.device(device) if device is not None else query.device
    dtype = torch.float64 if query.dtype == torch.float64 else torch.float32
    all_idx, all_sim = [], []
    for q0 in range(0, query.shape[0], chunk_size):
        q = _prepare(query[q0:q0 + chunk_size], metric, device, dtype)
        best_sim = torch.empty(q.shape[0], 0, device=device, dtype=dtype)
        best_idx = torch.empty(q.shape[0], 0, device=device, dtype=torch.int64)
        for g0 in range(0, gallery.shape[0], chunk_size):
            g = _prepare(gallery[g0:g0 + chunk_size], metric, device, dtype)
            sim = torch.cat([best_sim, _similarity(q, g, metric)], dim=1)
            idx = torch.cat([best_idx, torch.arange(g0, g0 + g.shape[0], device=device).expand(q.shape[0], -1)], dim=1)
            order = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :k]
            best_sim, best_idx = sim.gather(1, order), idx.gather(1, order)
        all_idx.append(best_idx)
        all_sim.append(best_sim)
    empty = torch.empty(0, k, device=device)
    return (torch.cat(all_idx) if all_idx else empty.long()), (torch.cat(all_sim) if all_sim else empty.to(dtype))


def _vote(neighbour_labels: torch.Tensor, similarities: torch.Tensor) -> torch.Tensor:
    """Majority label per row; ties by the highest summed similarity, then the smallest label."""
    classes, inverse = torch.unique(neighbour_labels, sorted=True, return_inverse=True)
    votes = torch.zeros(neighbour_labels.shape[0], classes.numel(), device=similarities.device)
    votes.scatter_add_(1, inverse, torch.ones_like(similarities, dtype=votes.dtype))
    summed = torch.zeros_like(votes, dtype=similarities.dtype).scatter_add_(1, inverse, similarities)
    summed[votes < votes.max(dim=1, keepdim=True).values] = -torch.inf
    return classes[summed.argmax(dim=1)]


def knn_classify(
    query, gallery, gallery_labels, k: int = 1, chunk_size: int = 4096, metric: str = "cosine", *, device=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """kNN classification of ``query`` ``(Nq, D)`` by ``gallery`` ``(Ng, D)`` with labels ``(Ng,)`` integers.

    Returns ``(predictions (Nq,), neighbour indices (Nq, k), similarities (Nq, k))``, see
    :func:`nearest_neighbours`. The prediction is the majority label among the k
    neighbours; a tie in votes goes to the tied label with the highest summed similarity,
    and a remaining exact tie to the smallest label. With k = 1 (the paper's protocol,
    cosine) this is the nearest neighbour's label.
    """
    labels = _tensor(gallery_labels, "gallery_labels", 1)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise InputError(f"gallery_labels must hold integers, got dtype {labels.dtype}")
    gallery = _tensor(gallery, "gallery", 2)
    if labels.shape[0] != gallery.shape[0]:
        raise InputError(f"gallery_labels must have one label per gallery row ({gallery.shape[0]}), "
                         f"got {labels.shape[0]}")
    idx, sim = nearest_neighbours(query, gallery, k, chunk_size=chunk_size, metric=metric, device=device)
    neighbour_labels = labels.to(idx.device, torch.int64)[idx]
    if idx.shape[0] == 0:
        return neighbour_labels[:, 0], idx, sim
    return _vote(neighbour_labels, sim), idx, sim


def retrieval_accuracy(
    query, gallery, query_labels, gallery_labels, k: int = 1, chunk_size: int = 4096, metric: str = "cosine",
    *, device=None
) -> dict:
    """kNN accuracy of ``query`` (labels ``(Nq,)``) against a labelled ``gallery`` (§6.3: k = 1, cosine).

    Returns ``{"accuracy": fraction in [0, 1], "predictions": (Nq,), "neighbours": (Nq, k),
    "similarities": (Nq, k)}`` (see :func:`knn_classify`).
    """
    targets = _tensor(query_labels, "query_labels", 1)
    pred, idx, sim = knn_classify(query, gallery, gallery_labels, k, chunk_size, metric, device=device)
    if targets.shape[0] != pred.shape[0] or pred.shape[0] == 0:
        raise InputError(f"query_labels must have one label per query row ({pred.shape[0]} > 0), "
                         f"got {targets.shape[0]}")
    accuracy = float((pred == targets.to(pred.device, torch.int64)).double().mean())
    logger.info("kNN (k=%d, %s) accuracy %.4f on %d queries", k, metric, accuracy, pred.shape[0])
    return {"accuracy": accuracy, "predictions": pred, "neighbours": idx, "similarities": sim}


@dataclass
class KNNResult:
    """kNN retrieval accuracy of a frozen encoder (``usdrl knn``): ``accuracy`` in [0, 1] of ``queries``
    query clips voted by their ``k`` nearest among ``gallery`` clips."""

    accuracy: float
    k: int
    queries: int
    gallery: int

    def to_json(self) -> dict:
        """The figures as one JSON object (what ``usdrl knn --json`` prints)."""
        return dataclasses.asdict(self)


def knn_evaluation(model, data, *, k: int = 1, gallery_split: str = "train", query_split: str = "test",
                   metric: str = "cosine", batch_size: int = 64, num_workers: int = 0, device=None) -> KNNResult:
    """The paper's retrieval protocol (§6.3): global features of every clip, the gallery's labels voted by
    the ``k`` nearest gallery clips of each query (cosine similarity by default).

    ``model``: a :class:`~usdrl.model.USDRL` or its folder, registered name or Hub repo. ``data``: a
    prepared dataset folder (its ``gallery_split`` and ``query_split``, resampled to the model's frames)
    or a pair ``(gallery, query)`` of datasets or split folders.
    """
    from ..data.prepared import open_split
    from .recognition import as_model, encode_dataset, split_pair

    model = as_model(model)
    gallery, query = (open_split(part, model=model, head=False)
                      for part in split_pair(data, (gallery_split, query_split)))
    (gallery_features, gallery_labels), (query_features, query_labels) = (
        encode_dataset(model.eval(), dataset, batch_size=batch_size, num_workers=num_workers, device=device)
        for dataset in (gallery, query))
    result = retrieval_accuracy(query_features, gallery_features, query_labels, gallery_labels, k=k, metric=metric)
    return KNNResult(accuracy=result["accuracy"], k=k, queries=len(query_features), gallery=len(gallery_features))
