import pytest
import torch
import torch.nn.functional as F

from pretext.data import stratified_subset
from pretext.evaluate.selection import select_for_labelling, spherical_kmeans


def groups(sizes, dim=8, spread=0.05, seed=0):
    """Rows around `len(sizes)` orthogonal directions, `sizes[g]` rows in group g."""
    gen = torch.Generator().manual_seed(seed)
    rows = [
        torch.eye(dim)[g] + spread * torch.randn(n, dim, generator=gen) for g, n in enumerate(sizes)
    ]
    return torch.cat(rows), torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)])


def test_each_region_gets_a_label_however_small():
    # four large groups and one of 3 rows in 403: a draw of 5 at random almost never holds one
    features, group = groups([100, 100, 100, 100, 3])
    chosen = select_for_labelling(features, 5, seed=0)
    assert sorted(group[chosen].tolist()) == [0, 1, 2, 3, 4]
    # in each group the row nearest the group's mean direction
    unit = F.normalize(features, dim=1)
    for g in range(5):
        members = torch.nonzero(group == g).flatten()
        centre = F.normalize(unit[members].mean(0), dim=0)
        assert chosen[group[chosen] == g].item() == members[(unit[members] @ centre).argmax()]


def test_a_random_stratified_draw_can_miss_what_selection_finds():
    # the contrast the selection is for: group 3, 4 rows, is a rare style of class 2
    features, group = groups([200, 200, 200, 4])
    labels = group.clamp(max=2)
    missed = sum(3 not in group[stratified_subset(labels, 3, seed)].tolist() for seed in range(20))
    assert missed >= 18  # one label of class 2 is the rare style 4 times in 204
    assert 3 in group[select_for_labelling(features, 4, seed=0)].tolist()


def test_selection_is_seeded_exact_and_sorted():
    features = torch.randn(300, 6, generator=torch.Generator().manual_seed(1))
    first = select_for_labelling(features, 20, seed=3)
    assert torch.equal(first, select_for_labelling(features, 20, seed=3))
    assert len(first) == 20 and len(first.unique()) == 20
    assert torch.equal(first, first.sort().values)


def test_clusters_left_empty_are_made_up_to_the_count():
    # identical rows: every row joins one centre, the other clusters end empty
    features = torch.ones(6, 3)
    chosen = select_for_labelling(features, 3, seed=0)
    assert len(chosen) == 3 and len(chosen.unique()) == 3


def test_kmeans_finds_the_groups():
    features, group = groups([50, 30, 20])
    _, assignment = spherical_kmeans(
        F.normalize(features, dim=1), 3, torch.Generator().manual_seed(0)
    )
    for g in range(3):  # each group one cluster, whole
        assert len(assignment[group == g].unique()) == 1
    assert len(assignment.unique()) == 3


@pytest.mark.parametrize("count", [0, 11])
def test_a_count_out_of_range_is_refused(count):
    with pytest.raises(ValueError, match="count"):
        select_for_labelling(torch.randn(10, 4), count, seed=0)
