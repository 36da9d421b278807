"""Quick start: embed skeleton clips of two formats with the pretrained USDRL model, compare them and retrieve
similar actions across formats.

Run: ``python examples/quickstart.py`` (offline, seconds on a CPU).

It loads the model shipped inside the package (``usdrl.hub.DEFAULT_MODEL``, the universal
``usdrl-universal-small``: a small DSTE encoder that reads keypoints of every registered format,
2D or 3D, pretrained self-supervised across formats on the library's synthetic actions, not on
real recordings), makes labelled clips with the synthetic action generator (29 classes, several
subjects and camera views) and embeds them with ``model.encode_keypoints``: the gallery as a
Kinect-style sensor gives them (NTU-25 3D joints in metres), the queries as a video pose
estimator would (COCO-17 2D pixels with confidences, rendered by
``usdrl.data.synthetic.render_keypoints``). Then it

* compares clips: the mean cosine similarity of embeddings of the same class and of
  different classes. Raw embeddings share a common component (max-pooled features are
  mostly positive), so the comparison is also made after subtracting the gallery's mean
  embedding;
* retrieves for every 2D query clip its nearest 3D gallery clip (cosine similarity, k = 1): the
  kNN protocol of the paper, across formats.
"""

import logging

import torch

from usdrl import USDRL
from usdrl.data.synthetic import ACTION_NAMES, NUM_CLASSES, make_clips, render_keypoints
from usdrl.hub import DEFAULT_MODEL

logger = logging.getLogger("quickstart")


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``(N, M)`` of embeddings ``a (N, D)`` and ``b (M, D)``."""
    return torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = USDRL.from_pretrained(DEFAULT_MODEL)
    gallery = make_clips(6 * NUM_CLASSES, seed=100, num_frames=64)   # 6 clips of each class, new draws
    queries = make_clips(3 * NUM_CLASSES, seed=101, num_frames=64)
    joints = render_keypoints(gallery.data, "ntu25")             # (174, M, 64, 25, 4): x, y, z metres + score
    keypoints = render_keypoints(queries.data, "coco17")         # (87, M, 64, 17, 3): x, y pixels + score
    gallery_emb = model.encode_keypoints(joints, format="ntu25", show_progress_bar=False)      # (174, 128)
    query_emb = model.encode_keypoints(keypoints, format="coco17", show_progress_bar=False)   # (87, 128)
    logger.info("embedded %d gallery clips (NTU-25 3D joints) and %d query clips (COCO-17 2D keypoints) to %d-d "
                "vectors with %s", len(gallery_emb), len(query_emb), query_emb.shape[1], DEFAULT_MODEL)

    same = torch.from_numpy(queries.labels[:, None] == gallery.labels[None, :])     # (87, 174) same class?
    mean = gallery_emb.mean(0)
    centred = cosine(query_emb - mean, gallery_emb - mean)
    similarity = cosine(query_emb, gallery_emb)
    logger.info("mean cosine similarity, same class vs different classes: %.3f vs %.3f (raw), %.3f vs %.3f "
                "(mean embedding subtracted)", similarity[same].mean(), similarity[~same].mean(),
                centred[same].mean(), centred[~same].mean())

    predicted = gallery.labels[similarity.argmax(dim=1).numpy()]
    accuracy = float((predicted == queries.labels).mean())
    logger.info("kNN-1 retrieval accuracy, 2D queries in the 3D gallery: %.1f%% (chance %.1f%%)", 100 * accuracy,
                100 / NUM_CLASSES)
    for i in range(0, len(predicted), 30):
        logger.info("  query %3d %-16s -> nearest gallery clip is %s", i, ACTION_NAMES[queries.labels[i]],
                    ACTION_NAMES[predicted[i]])


if __name__ == "__main__":
    main()
