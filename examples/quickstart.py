"""Quick start: embed skeleton clips with the pretrained USDRL model, compare them and retrieve similar actions.

Run: ``python examples/quickstart.py`` (offline, seconds on a CPU).

It loads the model shipped inside the package (``usdrl.hub.DEFAULT_MODEL``: a small DSTE
encoder pretrained self-supervised on the library's synthetic actions and then trained for
frame-wise detection of them, not on real recordings), makes labelled clips with the
synthetic action generator (NTU-25 layout, 29 classes, several subjects and camera views),
prepares each clip as ``usdrl prepare`` does (``usdrl.data.to_model_input``: the two most
active bodies, centred on the spine, shoulders rotated onto the x-axis, valid frames
resampled to 64) and embeds it with ``model.encode``. Then it

* compares clips: the mean cosine similarity of embeddings of the same class and of
  different classes. Raw embeddings share a common component (max-pooled features are
  mostly positive), so the comparison is also made after subtracting the gallery's mean
  embedding;
* retrieves for every query clip its nearest gallery clip (cosine similarity, k = 1): the
  kNN protocol of the paper.
"""

import logging

import numpy as np
import torch

from usdrl import USDRL
from usdrl.data import to_model_input
from usdrl.data.synthetic import ACTION_NAMES, NUM_CLASSES, make_clips
from usdrl.hub import DEFAULT_MODEL

logger = logging.getLogger("quickstart")


def prepare(clips, frames: int) -> np.ndarray:
    """Synthetic clips ``(N, 3, Tmax, 25, 2)`` with valid lengths -> model input ``(N, 3, frames, 25, 2)``."""
    pairs = zip(clips.data, clips.lengths, strict=True)
    return np.stack([to_model_input(clip, frames, length=n) for clip, n in pairs])


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``(N, M)`` of embeddings ``a (N, D)`` and ``b (M, D)``."""
    return torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = USDRL.from_pretrained(DEFAULT_MODEL)
    frames = model.config.num_frames
    gallery = make_clips(6 * NUM_CLASSES, seed=100)      # 6 clips of each class, new draws (not the training ones)
    queries = make_clips(3 * NUM_CLASSES, seed=101)
    gallery_emb = model.encode(prepare(gallery, frames), show_progress_bar=False)    # (174, 256)
    query_emb = model.encode(prepare(queries, frames), show_progress_bar=False)      # (87, 256)
    logger.info("embedded %d gallery and %d query clips to %d-d vectors with %s", len(gallery_emb),
                len(query_emb), query_emb.shape[1], DEFAULT_MODEL)

    same = torch.from_numpy(queries.labels[:, None] == gallery.labels[None, :])     # (87, 174) same class?
    mean = gallery_emb.mean(0)
    centred = cosine(query_emb - mean, gallery_emb - mean)
    similarity = cosine(query_emb, gallery_emb)
    logger.info("mean cosine similarity, same class vs different classes: %.3f vs %.3f (raw), %.3f vs %.3f "
                "(mean embedding subtracted)", similarity[same].mean(), similarity[~same].mean(),
                centred[same].mean(), centred[~same].mean())

    predicted = gallery.labels[similarity.argmax(dim=1).numpy()]
    accuracy = float((predicted == queries.labels).mean())
    logger.info("kNN-1 retrieval accuracy: %.1f%% (chance %.1f%%)", 100 * accuracy, 100 / NUM_CLASSES)
    for i in range(0, len(predicted), 30):
        logger.info("  query %3d %-16s -> nearest gallery clip is %s", i, ACTION_NAMES[queries.labels[i]],
                    ACTION_NAMES[predicted[i]])


if __name__ == "__main__":
    main()
