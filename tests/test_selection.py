import pytest
import torch
import torch.nn.functional as F

from pretext import rundir
from pretext.augment import preset
from pretext.cli import main
from pretext.commands import finetune_command, study_command
from pretext.commands.common import labelled_splits
from pretext.config import input_stats, recipe
from pretext.data import stratified_subset
from pretext.evaluate import extract_features
from pretext.evaluate.knn import knn_accuracy
from pretext.evaluate.selection import labelled_subset, select_for_labelling, spherical_kmeans


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


def test_labelled_subset_draws_at_random_or_selects_and_checks_the_count():
    features, group = groups([30, 30, 30])
    assert torch.equal(labelled_subset(group, 6, 2), stratified_subset(group, 6, 2))
    assert torch.equal(labelled_subset(group, 6, 2, features), select_for_labelling(features, 6, 2))
    with pytest.raises(Exception, match="fewer than the 3 classes"):
        labelled_subset(group, 2, 0, features)


def embedded_splits(run):
    """The run's train and test splits and their plain embeddings, as the study computes them."""
    pre = rundir.pretrain_config(run)
    train, test = labelled_splits(pre.dataset, pre.data_dir, None, pre.image_size)
    encoder, plain = rundir.load_encoder(run), preset("none", input_stats(pre))
    cpu = torch.device("cpu")
    embed = [extract_features(encoder, s.images, plain, cpu) for s in (train, test)]
    return pre, train, test, *embed


def test_every_study_arm_uses_the_selected_labels(pretrained_run):
    rows = study_command(pretrained_run, labels=(20,), seeds=2, min_steps=1, select_labels=True)
    pre, train, test, train_x, test_x = embedded_splits(pretrained_run)
    knn = next(r for r in rows if r["method"] == "knn")
    base = recipe(pre.recipe)
    for seed in range(2):
        idx = select_for_labelling(train_x, 20, seed)
        assert not torch.equal(idx, stratified_subset(train.labels, 20, seed))
        expected = knn_accuracy(
            train_x[idx], train.labels[idx], test_x, test.labels, base.knn_k, base.knn_temperature
        )
        assert knn["values"][seed] == pytest.approx(expected)


def test_finetune_trains_on_the_selected_labels(pretrained_run, monkeypatch):
    from pretext.commands import finetune as command

    seen = []

    def fake_finetune(encoder, subset, *rest, **kw):
        seen.append(subset.labels)
        return {"test_accuracy": 0.5, "model": None}

    monkeypatch.setattr(command, "finetune", fake_finetune)
    finetune_command(pretrained_run, labels=20, select_labels=True, draw=False)
    _, train, _, train_x, _ = embedded_splits(pretrained_run)
    assert torch.equal(seen[0], train.labels[select_for_labelling(train_x, 20, seed=0)])


def test_selection_without_labels_or_a_pretrained_run_is_refused(tiny_data, tmp_path, capsys):
    common = ["finetune", "--data-dir", str(tiny_data), "--select-labels"]
    assert main([*common, "--from-scratch", "--labels", "20"]) != 0
    assert "--select-labels chooses from a pretrained embedding" in capsys.readouterr().err
    assert main([*common, "--from-scratch"]) != 0
    assert "give --labels N too" in capsys.readouterr().err


def test_select_lists_the_images_to_label(pretrained_run, tiny_data, capsys):
    common = ["select", "--out", str(pretrained_run), "--data-dir", str(tiny_data)]
    assert main([*common, "--labels", "12", "--seed", "1"]) == 0
    table = (pretrained_run / "to_label.csv").read_text().splitlines()
    _, train, _, train_x, _ = embedded_splits(pretrained_run)
    chosen = select_for_labelling(train_x, 12, seed=1).tolist()
    assert table[0] == "index,source,class"
    assert table[1:] == [f"{i},mnist train #{i},{int(train.labels[i])}" for i in chosen]
    assert main([*common, "--labels", str(len(train) + 1)]) != 0
    assert f"--labels must be in 1..{len(train)}" in capsys.readouterr().err
    assert len((pretrained_run / "to_label.csv").read_text().splitlines()) == 13  # kept


def test_a_subset_without_the_last_class_still_counts_every_class():
    # a chosen subset may hold no image of the last class: its classifier must still have it
    from pretext.data import ImageSet

    data = ImageSet(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 2, 1]))
    part = data.subset(torch.tensor([0, 1]))
    assert part.num_classes == 3 and part.subset(torch.tensor([1])).num_classes == 3
    assert ImageSet(part.images, part.labels).num_classes == 2  # a set of its own counts its own
