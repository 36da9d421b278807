import logging
import math

import numpy as np
import pytest
import torch

from usdrl.errors import InputError
from usdrl.tasks import knn_classify, nearest_neighbours, retrieval_accuracy


def brute_force(query, gallery, k, metric):
    q, g = torch.as_tensor(query, dtype=torch.float64), torch.as_tensor(gallery, dtype=torch.float64)
    if metric == "cosine":
        q, g = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(g, dim=1)
    sim = -torch.cdist(q, g) if metric == "euclidean" else q @ g.T
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :k]
    return order, sim.gather(1, order)


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
@pytest.mark.parametrize("chunk_size", [1, 2, 7, 64, 4096])
@pytest.mark.parametrize("k", [1, 3])
def test_neighbours_match_brute_force(metric, chunk_size, k):
    rng = np.random.default_rng(0)
    query, gallery = rng.normal(size=(23, 8)), rng.normal(size=(41, 8))   # chunk 1, 2 < k; 4096 > gallery
    idx, sim = nearest_neighbours(query, gallery, k, chunk_size=chunk_size, metric=metric)
    ref_idx, ref_sim = brute_force(query, gallery, k, metric)
    assert idx.shape == (23, k) and idx.dtype == torch.int64 and sim.dtype == torch.float64  # float64 in, float64 out
    np.testing.assert_array_equal(idx.numpy(), ref_idx.numpy())
    np.testing.assert_allclose(sim.numpy(), ref_sim.numpy(), rtol=1e-5, atol=1e-5)


def test_knn_classify_votes_and_ties():
    query = torch.tensor([[1.0, 0.0]])
    # cosine similarities to the query: 1, 0.8, 0.6, 0, -1
    gallery = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([5, 7, 7, 5, 9])
    assert knn_classify(query, gallery, labels, k=1)[0].tolist() == [5]
    assert knn_classify(query, gallery, labels, k=2)[0].tolist() == [5]   # 1 vote each; sums 1 vs 0.8
    assert knn_classify(query, gallery, labels, k=3)[0].tolist() == [7]   # votes 7: 2, 5: 1
    assert knn_classify(query, gallery, labels, k=4)[0].tolist() == [7]   # 2 - 2; sums 7: 1.4, 5: 1.0
    pred, idx, sim = knn_classify(query, gallery, labels, k=5, chunk_size=2)
    assert pred.tolist() == [7] and idx.tolist() == [[0, 1, 2, 3, 4]]     # 5: 2 votes (sum 1), 7: 2 (1.4), 9: 1
    np.testing.assert_allclose(sim.numpy(), [[1, 0.8, 0.6, 0, -1]], atol=1e-6)
    # exact tie in votes and summed similarity -> smallest label
    assert knn_classify(query, torch.tensor([[0.0, 1.0], [0.0, -1.0]]), torch.tensor([4, 3]), k=2)[0].tolist() == [3]


def test_equal_similarities_rank_lower_index_first():
    gallery = np.ones((10, 3))
    idx, _ = nearest_neighbours(np.ones((2, 3)), gallery, 4, chunk_size=3)
    assert idx.tolist() == [[0, 1, 2, 3]] * 2


def test_knn_classify_matches_brute_force_majority():
    rng = np.random.default_rng(1)
    query, gallery = rng.normal(size=(30, 5)).astype(np.float32), rng.normal(size=(50, 5)).astype(np.float32)
    labels = rng.integers(0, 4, size=50)
    pred, idx, sim = knn_classify(query, gallery, labels, k=5, chunk_size=8)
    for row in range(30):
        neigh = labels[idx[row].numpy()]
        votes = {c: (int((neigh == c).sum()), float(sim[row][neigh == c].sum())) for c in set(neigh.tolist())}
        expected = min(votes, key=lambda c: (-votes[c][0], -votes[c][1], c))
        assert pred[row].item() == expected


def test_retrieval_accuracy_and_validation():
    gallery = torch.eye(4)
    query = torch.tensor([[1.0, 0.1, 0, 0], [0, 0, 1.0, 0.2], [0, 0, 0.1, 1.0]])
    out = retrieval_accuracy(query, gallery, torch.tensor([0, 2, 1]), torch.tensor([0, 1, 2, 3]))
    # nearest: 0, 2, 3 -> labels 0, 2, 3 vs 0, 2, 1 -> 2/3
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["neighbours"].tolist() == [[0], [2], [3]] and out["predictions"].tolist() == [0, 2, 3]
    with pytest.raises(InputError, match="k must be in 1..4"):
        knn_classify(query, gallery, torch.arange(4), k=5)
    with pytest.raises(InputError, match="same feature size"):
        knn_classify(query[:, :3], gallery, torch.arange(4))
    with pytest.raises(InputError, match="integers"):
        knn_classify(query, gallery, torch.zeros(4))
    with pytest.raises(InputError, match="metric"):
        knn_classify(query, gallery, torch.arange(4), metric="manhattan")
    with pytest.raises(InputError, match="one label per query"):
        retrieval_accuracy(query, gallery, torch.tensor([0]), torch.arange(4))


def test_the_default_metric_is_cosine_on_vectors_of_any_length():
    # The query points along (1, 0.1). By angle the short gallery vector 1 is nearest (cos 0.995 vs 0.77);
    # by dot product (0.3 vs 3.3) and by distance (2.92 vs 2.70) the long vector 0 wins.
    query = torch.tensor([[3.0, 0.3]])
    gallery = torch.tensor([[3.0, 3.0], [0.1, 0.0]])
    idx, sim = nearest_neighbours(query, gallery)
    assert idx.tolist() == [[1]] and sim.item() == pytest.approx(1 / math.sqrt(1.01))
    pred, idx, _ = knn_classify(query, gallery, torch.tensor([7, 4]))
    assert pred.tolist() == [4] and idx.tolist() == [[1]]   # one neighbour by default
    assert retrieval_accuracy(query, gallery, torch.tensor([4]), torch.tensor([7, 4]))["accuracy"] == 1.0
    assert retrieval_accuracy(query, gallery, [4], [7, 4], metric="dot")["accuracy"] == 0.0
    assert nearest_neighbours(query, gallery, metric="dot")[0].tolist() == [[0]]
    assert nearest_neighbours(query, gallery, metric="euclidean")[0].tolist() == [[0]]


def test_error_messages_name_what_came():
    gallery = torch.eye(4, 3)   # 4 rows of 3: a slip between rows and columns shows in the messages
    query = torch.ones(1, 3)
    with pytest.raises(InputError, match=r"^query must have 2 dimensions, got shape \(3,\)$"):
        nearest_neighbours(torch.ones(3), gallery)
    with pytest.raises(InputError, match=r"^gallery must have 2 dimensions, got shape \(2, 2, 2\)$"):
        nearest_neighbours(query, torch.ones(2, 2, 2))
    with pytest.raises(InputError, match=r"^gallery must have 2 dimensions, got shape \(3,\)$"):
        knn_classify(query, torch.ones(3), torch.arange(3))
    with pytest.raises(InputError, match=r"^k must be in 1\.\.4 \(the gallery size\), got 5$"):
        nearest_neighbours(query, gallery, 5)
    with pytest.raises(InputError, match=r"^chunk_size must be >= 1, got 0$"):
        nearest_neighbours(query, gallery, chunk_size=0)
    with pytest.raises(InputError, match=r"^gallery_labels must have 1 dimensions, got shape \(4, 1\)$"):
        knn_classify(query, gallery, torch.zeros(4, 1, dtype=torch.int64))
    with pytest.raises(InputError, match=r"^gallery_labels must have one label per gallery row \(4\), got 3$"):
        knn_classify(query, gallery, torch.arange(3))
    with pytest.raises(InputError, match=r"^query_labels must have 1 dimensions, got shape \(1, 1\)$"):
        retrieval_accuracy(query, gallery, torch.zeros(1, 1, dtype=torch.int64), torch.arange(4))


@pytest.mark.parametrize("dtype, expected", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                             (torch.float16, torch.float32), (torch.bfloat16, torch.float32)])
def test_similarities_are_float32_or_float64(dtype, expected):
    query = torch.tensor([[3.0, 0.3], [0.0, 2.0]], dtype=dtype)
    gallery = torch.tensor([[3.0, 3.0], [0.1, 0.0], [0.0, -1.0]], dtype=dtype)
    idx, sim = nearest_neighbours(query, gallery, 2)
    assert sim.dtype == expected and idx.dtype == torch.int64
    assert idx.tolist() == [[1, 0], [0, 1]]
    pred, _, knn_sim = knn_classify(query, gallery, torch.tensor([5, 6, 7], dtype=torch.int32), k=1)
    assert pred.dtype == torch.int64 and pred.tolist() == [6, 5] and knn_sim.dtype == expected
    out = retrieval_accuracy(query, gallery, [6, 7], [5, 6, 7])
    assert out["accuracy"] == 0.5 and out["similarities"].dtype == expected
    torch.testing.assert_close(out["similarities"], sim[:, :1])


def test_half_precision_inputs_are_compared_in_float32():
    g = torch.Generator().manual_seed(4)
    query, gallery = torch.randn(5, 16, generator=g).half(), torch.randn(40, 16, generator=g).half()
    for metric in ("cosine", "dot", "euclidean"):
        idx, sim = nearest_neighbours(query, gallery, 3, metric=metric)
        ref_idx, ref_sim = nearest_neighbours(query.float(), gallery.float(), 3, metric=metric)
        assert torch.equal(idx, ref_idx)
        torch.testing.assert_close(sim, ref_sim, rtol=1e-6, atol=1e-6)


def test_no_queries_give_empty_results():
    gallery = torch.eye(4, 3)
    idx, sim = nearest_neighbours(torch.empty(0, 3), gallery, 2)
    assert idx.shape == (0, 2) and idx.dtype == torch.int64 and sim.shape == (0, 2) and sim.dtype == torch.float32
    assert nearest_neighbours(torch.empty(0, 3, dtype=torch.float64), gallery, 2)[1].dtype == torch.float64
    pred, idx, sim = knn_classify(torch.empty(0, 3), gallery, torch.arange(4), k=3)
    assert pred.shape == (0,) and pred.dtype == torch.int64 and idx.shape == (0, 3)
    with pytest.raises(InputError, match="one label per query"):
        retrieval_accuracy(torch.empty(0, 3), gallery, torch.empty(0, dtype=torch.int64), torch.arange(4))


def test_inputs_that_track_gradients_and_the_log_line(caplog):
    query = torch.tensor([[1.0, 0.0]], requires_grad=True)
    gallery = torch.tensor([[0.0, 1.0], [2.0, 0.1]], requires_grad=True)
    assert nearest_neighbours(query, gallery)[0].tolist() == [[1]]
    assert nearest_neighbours(query, gallery, device="cpu")[0].tolist() == [[1]]
    with caplog.at_level(logging.INFO, logger="usdrl"):
        retrieval_accuracy(query, gallery, [3], [2, 3])
    assert "kNN (k=1, cosine) accuracy 1.0000 on 1 queries" in caplog.messages


def test_large_gallery_is_chunked():
    """A 20k gallery with chunk 1024 gives the brute-force neighbours of a few queries."""
    rng = np.random.default_rng(2)
    gallery = torch.from_numpy(rng.normal(size=(20000, 16)).astype(np.float32))
    query = gallery[[5, 12345, 19999]] + 0.01
    idx, _ = nearest_neighbours(query, gallery, 2, chunk_size=1024)
    np.testing.assert_array_equal(idx.numpy(), brute_force(query, gallery, 2, "cosine")[0].numpy())
    assert idx[:, 0].tolist() == [5, 12345, 19999]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    rng = np.random.default_rng(3)
    query, gallery = torch.randn(100, 32), torch.from_numpy(rng.normal(size=(500, 32)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 10, size=500))
    cpu = knn_classify(query, gallery, labels, k=3, chunk_size=64)
    gpu = knn_classify(query.cuda(), gallery, labels, k=3, chunk_size=64)
    assert gpu[0].is_cuda
    np.testing.assert_array_equal(gpu[1].cpu().numpy(), cpu[1].numpy())
