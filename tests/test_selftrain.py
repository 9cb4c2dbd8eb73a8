import math

import pytest
import torch

from pretext.config import SelfTrainConfig
from pretext.data import ImageSet
from pretext.evaluate.selftrain import confident_targets, self_train, self_training_loss
from pretext.models import Classifier, build_encoder


def test_confident_targets_hand_computed():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    targets, keep = confident_targets(logits, threshold=0.7)
    # softmax maxima: e^2 / (e^2 + 2) = 0.787, 1/3, e^5 / (e^5 + 2) = 0.987
    assert targets.tolist() == [0, 0, 2]
    assert keep.tolist() == [1.0, 0.0, 1.0]
    assert confident_targets(logits, threshold=0.9)[1].tolist() == [0.0, 0.0, 1.0]


def test_self_training_loss_hand_computed():
    unlabelled = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    labelled = torch.tensor([[0.0, 2.0]])
    loss = self_training_loss(
        unlabelled, torch.tensor([0, 1]), torch.tensor([1.0, 0.0]), labelled, torch.tensor([0])
    )
    first = -math.log(math.e / (math.e + 1))  # the confident row, target 0
    supervised = -math.log(1 / (1 + math.e**2))  # the labelled row, label 0
    # the unsure row counts as zero in the mean over both unlabelled rows
    assert loss.item() == pytest.approx(first / 2 + supervised, rel=1e-6)


def tiny_classifier(seed: int = 0) -> Classifier:
    return Classifier(build_encoder("cnn", seed=seed), 10, seed=seed)


def test_self_train_is_seeded_and_leaves_the_callers_model():
    gen = torch.Generator().manual_seed(0)
    unlabelled = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8, generator=gen)
    labelled = ImageSet(unlabelled[:10], torch.arange(10), "tiny")
    model = tiny_classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = SelfTrainConfig(epochs=2, batch_size=16, labelled_batch=4, threshold=0.1, seed=3)
    device = torch.device("cpu")
    quiet = lambda *_: None  # noqa: E731
    first = self_train(model, unlabelled, labelled, cfg, device, quiet)
    second = self_train(model, unlabelled, labelled, cfg, device, quiet)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name  # the caller's model is untouched
    trained = first["model"].state_dict()
    assert not torch.equal(trained["linear.weight"], before["linear.weight"])
    for name, value in second["model"].state_dict().items():
        assert torch.equal(value, trained[name]), name  # one seed, one result
    # threshold 0.1 with 10 classes: every prediction is confident enough
    assert first["confident"] == 1.0
    strict_cfg = SelfTrainConfig(epochs=1, threshold=1.0)
    strict = self_train(model, unlabelled, labelled, strict_cfg, device, quiet)
    assert 0.0 <= strict["confident"] < 1.0
    with pytest.raises(ValueError, match="threshold"):
        self_train(model, unlabelled, labelled, SelfTrainConfig(threshold=0.0), device, quiet)
