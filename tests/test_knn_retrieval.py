import pytest
import torch
import torch.nn.functional as F

from pretext.evaluate.knn import knn_accuracy, knn_predict
from pretext.evaluate.retrieval import retrieval_metrics


def brute_force_knn(bank, labels, queries, classes, k, t):
    bank, queries = F.normalize(bank, dim=1), F.normalize(queries, dim=1)
    out = []
    for q in queries:
        sims = torch.stack([torch.dot(q, b) for b in bank])
        order = sorted(range(len(bank)), key=lambda i: -float(sims[i]))[:k]
        votes = [0.0] * classes
        for i in order:
            votes[int(labels[i])] += float(torch.exp(sims[i] / t))
        out.append(max(range(classes), key=lambda c: votes[c]))
    return torch.tensor(out)


@pytest.mark.parametrize("k,t,chunk", [(1, 0.1, 7), (5, 0.1, 3), (20, 0.5, 100)])
def test_knn_matches_brute_force(k, t, chunk):
    bank, queries = torch.randn(60, 8), torch.randn(25, 8)
    labels = torch.randint(0, 4, (60,))
    expected = brute_force_knn(bank, labels, queries, 4, k, t)
    assert torch.equal(knn_predict(bank, labels, queries, 4, k, t, chunk_size=chunk), expected)


def test_knn_on_separable_clusters_is_perfect():
    centres = torch.eye(3) * 10
    labels = torch.arange(300) % 3
    bank = centres[labels] + torch.randn(300, 3)
    queries = centres[torch.arange(30) % 3] + torch.randn(30, 3)
    assert knn_accuracy(bank, labels, queries, torch.arange(30) % 3, k=10) == 1.0


def test_retrieval_hand_computed():
    # Database on a circle; labels chosen so that the ranking of the single query is known.
    angles = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4])
    database = torch.stack([angles.cos(), angles.sin()], dim=1)
    database_labels = torch.tensor([1, 0, 1, 1, 0])
    query = torch.tensor([[1.0, 0.0]])  # ranking by similarity: items 0,1,2,3,4
    out = retrieval_metrics(database, database_labels, query, torch.tensor([1]))
    # relevant flags in rank order: 1,0,1,1,0; R = 3 (three items of class 1).
    assert out["precision_at_1"] == pytest.approx(1.0)
    assert out["precision_at_10"] == pytest.approx(3 / 10)
    # mAP@R over the first 3 results: (1/1 + 0 + 2/3) / 3
    assert out["map_at_r"] == pytest.approx((1 + 2 / 3) / 3)


def test_retrieval_perfect_and_chunked():
    labels = torch.arange(40) % 4
    database = F.one_hot(labels, 4).float() + 0.01 * torch.randn(40, 4)
    queries = F.one_hot(torch.arange(8) % 4, 4).float()
    out = retrieval_metrics(database, labels, queries, torch.arange(8) % 4, chunk_size=3)
    assert out == {"precision_at_1": 1.0, "precision_at_10": 1.0, "map_at_r": pytest.approx(1.0)}
