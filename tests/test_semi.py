import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from pretext.augment import make_view, preset
from pretext.config import SemiConfig, semi_passes, starts_from_clusters, told_passes
from pretext.data import ImageSet
from pretext.evaluate import semi
from pretext.evaluate.semi import (
    Alignment,
    cluster_start,
    confident_targets,
    follow,
    semi_loss,
    semi_train,
    teacher_answers,
)
from pretext.models import Classifier, build_encoder

CPU = torch.device("cpu")


def quiet(*_args) -> None:
    pass


def test_confident_targets_hand_computed():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    targets, keep = confident_targets(logits, threshold=0.7)
    # softmax maxima: e^2 / (e^2 + 2) = 0.787, 1/3, e^5 / (e^5 + 2) = 0.987
    assert targets.tolist() == [0, 0, 2]
    assert keep.tolist() == [1.0, 0.0, 1.0]
    assert confident_targets(logits, threshold=0.9)[1].tolist() == [0.0, 0.0, 1.0]
    # a threshold exactly at a row's maximum keeps it (at least, not more than)
    assert confident_targets(torch.zeros(1, 4), threshold=0.25)[1].tolist() == [1.0]


def test_distribution_alignment_hand_computed():
    # two classes, labelled shares 3/4 and 1/4; the teacher's running mean starts at 1/2 each
    alignment = Alignment(torch.tensor([0, 0, 0, 1]), num_classes=2, momentum=0.5)
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]])  # a batch answering 1/2, 1/2
    scale = alignment.scale(logits)
    assert alignment.mean.tolist() == pytest.approx([0.5, 0.5])
    assert scale.tolist() == pytest.approx([1.5, 0.5])
    # rescaled 1/2, 1/2 -> 3/4, 1/4: class 0, sure at 0.7 but not at 0.8
    targets, keep = confident_targets(logits, 0.7, scale)
    assert targets.tolist() == [0, 0] and keep.tolist() == [1.0, 1.0]
    assert confident_targets(logits, 0.8, scale)[1].tolist() == [0.0, 0.0]
    # a teacher that answers class 1 too often: its share is pulled down
    sure_of_one = torch.tensor([[-9.0, 9.0]])  # about 0, 1
    scale = alignment.scale(sure_of_one)  # mean 1/4, 3/4 after momentum 0.5
    assert alignment.mean.tolist() == pytest.approx([0.25, 0.75], abs=1e-4)
    assert scale.tolist() == pytest.approx([3.0, 1 / 3], rel=1e-3)


def test_semi_loss_hand_computed():
    unlabelled = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    labelled = torch.tensor([[0.0, 2.0]])
    loss = semi_loss(
        unlabelled, torch.tensor([0, 1]), torch.tensor([1.0, 0.0]), labelled, torch.tensor([0])
    )
    first = -math.log(math.e / (math.e + 1))  # the confident row, target 0
    supervised = -math.log(1 / (1 + math.e**2))  # the labelled row, label 0
    # the unsure row counts as zero in the mean over both unlabelled rows
    assert loss.item() == pytest.approx(first / 2 + supervised, rel=1e-6)


def tiny_classifier(seed: int = 0, classes: int = 10) -> Classifier:
    return Classifier(build_encoder("cnn", seed=seed), classes, seed=seed)


def test_cluster_start_answers_with_the_clusters_names():
    clusters = tiny_classifier(classes=4)
    mapping = torch.tensor([2, 0, 3, 1])  # cluster 0 is class 2, cluster 1 is class 0, ...
    named = cluster_start(clusters, mapping, 4)
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        by_cluster, by_class = clusters(x), named(x)
    for cluster, cls in enumerate(mapping.tolist()):
        assert torch.allclose(by_class[:, cls], by_cluster[:, cluster])
    assert torch.equal(clusters.linear.weight, tiny_classifier(classes=4).linear.weight)  # a copy
    with pytest.raises(ValueError, match="one cluster per class"):
        cluster_start(clusters, torch.tensor([0, 0, 1, 2]), 4)


def test_teacher_follows_the_student_by_its_decay():
    teacher, student = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    t0, s0 = teacher.weight.detach().clone(), student.weight.detach().clone()
    follow(teacher, student, decay=0.75)
    assert torch.allclose(teacher.weight, 0.75 * t0 + 0.25 * s0)
    assert torch.equal(student.weight, s0)


def test_teacher_answers_average_the_probabilities_of_its_views():
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 3))
    batch = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    weak = preset("light")
    answers = teacher_answers(teacher, batch, weak, 2, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)  # the same two views, drawn one after the other
    views = torch.cat([make_view(batch, weak, gen), make_view(batch, weak, gen)])
    expected = F.softmax(teacher(views), 1).view(2, 5, 3).mean(0)
    assert torch.allclose(answers.exp(), expected, atol=1e-6)
    one = teacher_answers(teacher, batch, weak, 1, torch.Generator().manual_seed(7))
    assert torch.equal(one, teacher(make_view(batch, weak, torch.Generator().manual_seed(7))))
    unlabelled, labelled = tiny_sets()
    with pytest.raises(ValueError, match="at least 1"):
        semi_train(tiny_classifier(), unlabelled, labelled, SemiConfig(teacher_views=0), CPU, quiet)
    with pytest.raises(ValueError, match="at least 1 pass"):
        semi_train(tiny_classifier(), unlabelled, labelled, SemiConfig(epochs=0), CPU, quiet)


def tiny_sets():
    gen = torch.Generator().manual_seed(0)
    unlabelled = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8, generator=gen)
    return unlabelled, ImageSet(unlabelled[:10], torch.arange(10), "tiny")


def test_semi_train_is_seeded_and_leaves_the_callers_model():
    unlabelled, labelled = tiny_sets()
    model = tiny_classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = SemiConfig(epochs=2, few_epochs=2, batch_size=16, labelled_batch=4, threshold=0.1, seed=3)
    first = semi_train(model, unlabelled, labelled, cfg, CPU, quiet)
    second = semi_train(model, unlabelled, labelled, cfg, CPU, quiet)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name  # the caller's model is untouched
    trained = first["model"].state_dict()
    assert not torch.equal(trained["linear.weight"], before["linear.weight"])
    for name, value in second["model"].state_dict().items():
        assert torch.equal(value, trained[name]), name  # one seed, one result
    other = semi_train(
        model, unlabelled, labelled, SemiConfig(**{**cfg.__dict__, "seed": 4}), CPU, quiet
    )
    assert not torch.equal(other["model"].state_dict()["linear.weight"], trained["linear.weight"])
    # threshold 0.1 with 10 classes: every answer is confident enough
    assert first["confident"] == 1.0 and first["steps"] == 2 * 3
    strict = semi_train(
        model, unlabelled, labelled, SemiConfig(few_epochs=1, threshold=1.0), CPU, quiet
    )
    assert 0.0 <= strict["confident"] < 1.0
    with pytest.raises(ValueError, match="threshold"):
        semi_train(model, unlabelled, labelled, SemiConfig(threshold=0.0), CPU, quiet)
    # decoupled decay: each step multiplies the weights by 1 - lr * 50 before Adam's step
    norms = [
        semi_train(
            model, unlabelled, labelled, replace(cfg, teacher_decay=0.0, weight_decay=d), CPU, quiet
        )["model"].linear.weight.norm()
        for d in (0.0, 50.0)
    ]
    assert norms[1] < 0.9 * norms[0]


def test_passes_depend_on_labels_per_class():
    """Under two labels per class the default passes are `few_epochs`, from two up `epochs`;
    passes a user names apply at every count."""
    cfg = SemiConfig(epochs=3, few_epochs=1, batch_size=16, labelled_batch=4)
    assert semi_passes(cfg, 19, 10) == 1 and semi_passes(cfg, 20, 10) == 3
    assert SemiConfig().few_epochs < SemiConfig().epochs
    assert told_passes(None, seed=2) == SemiConfig(seed=2)
    assert semi_passes(told_passes(5), 10, 10) == semi_passes(told_passes(5), 600, 10) == 5
    unlabelled, labelled = tiny_sets()  # 40 images, 16 a step: 3 steps a pass
    one = semi_train(tiny_classifier(), unlabelled, labelled, cfg, CPU, quiet)
    assert one["passes"] == 1 and one["steps"] == 3
    two_each = ImageSet(unlabelled[:20], torch.arange(20) % 10, "tiny")
    three = semi_train(tiny_classifier(), unlabelled, two_each, cfg, CPU, quiet)
    assert three["passes"] == 3 and three["steps"] == 9


def test_an_unsure_teacher_teaches_nothing(monkeypatch):
    """With no answer confident enough, only the labelled batch moves the classifier: the
    unlabelled images' term is zero, whatever their pixels."""
    unlabelled, labelled = tiny_sets()
    cfg = SemiConfig(
        few_epochs=1, batch_size=16, labelled_batch=4, threshold=1.0, teacher_decay=0.0
    )
    model = tiny_classifier()
    seen = []
    monkeypatch.setattr(semi, "semi_loss", lambda *a: seen.append(a[2].sum()) or semi_loss(*a))
    semi_train(model, unlabelled, labelled, cfg, CPU, quiet)
    assert seen and all(kept == 0 for kept in seen)


def test_semi_never_trains_on_the_test_images(pretrained_run, tiny_data, monkeypatch):
    """Every image the clusters and the semi-supervised training see is a training image: the
    test split (marked here by a pixel value no training image has) only scores."""
    from pretext.commands import finetune_command
    from pretext.data import load_dataset
    from pretext.evaluate import cluster

    train = load_dataset("mnist", "train", str(tiny_data))
    train = ImageSet(train.images.clamp(max=254), train.labels, "mnist")
    test = ImageSet(torch.full((12, 1, 28, 28), 255, dtype=torch.uint8), torch.arange(12) % 10, "t")
    seen = []

    def watched(make_view):
        return lambda images, *rest: seen.append(images.clone()) or make_view(images, *rest)

    monkeypatch.setattr(semi, "make_view", watched(semi.make_view))
    monkeypatch.setattr(cluster, "make_view", watched(cluster.make_view))
    clustered = []
    monkeypatch.setattr(cluster, "scan_loss", watched_call(cluster.scan_loss, clustered))
    # one label per class: the clusters start it, and they see training images only too
    result = finetune_command(
        pretrained_run,
        labels=10,
        semi=SemiConfig(few_epochs=1, batch_size=16),
        splits=(train, test),
    )
    assert seen and clustered and all(int(batch.max()) <= 254 for batch in seen)
    assert result["labels"] == 10 and result["semi"]["steps"] == 4  # 64 images, 16 a step


def watched_call(function, calls: list):
    """`function`, counting its calls in `calls`."""
    return lambda *args, **kw: calls.append(1) or function(*args, **kw)


def test_clusters_start_the_pretrained_arm_under_two_labels_per_class(pretrained_run, monkeypatch):
    from pretext.commands import finetune_command
    from pretext.evaluate import cluster

    assert starts_from_clusters(SemiConfig(), 19, 10)  # under 2 per class
    assert not starts_from_clusters(SemiConfig(), 20, 10)
    assert starts_from_clusters(SemiConfig(clusters_below=3), 20, 10)
    clustered = []
    monkeypatch.setattr(cluster, "scan_loss", watched_call(cluster.scan_loss, clustered))
    semi = SemiConfig(epochs=1, few_epochs=1, batch_size=32)
    finetune_command(pretrained_run, labels=20, semi=semi)
    assert not clustered  # two labels per class: the encoder with a new head
    finetune_command(pretrained_run, labels=20, semi=semi, from_scratch=True)
    assert not clustered  # random weights never start from clusters
    finetune_command(pretrained_run, labels=10, semi=semi)
    assert clustered
