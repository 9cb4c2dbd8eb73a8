import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from pretext.config import PretrainConfig
from pretext.losses import (
    barlow_twins_loss,
    byol_loss,
    dino_loss,
    info_nce,
    negative_cosine,
    vicreg_loss,
)
from pretext.methods import available_methods, build_method
from pretext.methods.momentum import cosine_momentum, ema_update
from pretext.models import build_encoder
from pretext.rundir import load_encoder
from pretext.train import pretrain

METHODS = sorted(available_methods())


def test_info_nce_hand_computed():
    # One query equal to its key, one negative orthogonal: -log(e^{1/t} / (e^{1/t} + e^0)).
    q = torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0], [1.0]])
    expected = -math.log(math.exp(1 / 0.5) / (math.exp(1 / 0.5) + 1))
    assert float(info_nce(q, q.clone(), queue, 0.5)) == pytest.approx(expected, abs=1e-6)


def test_negative_cosine_and_byol_values_and_stop_gradient():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    z = torch.tensor([[0.0, 1.0], [2.0, 2.0]], requires_grad=True)
    assert float(negative_cosine(p, z)) == pytest.approx(-(0 + 1) / 2)
    assert float(byol_loss(p, z)) == pytest.approx(((2 - 0) + (2 - 2)) / 2)
    byol_loss(p, z).backward()
    assert z.grad is None and p.grad is not None  # the target side gets no gradient


def test_barlow_twins_is_zero_for_identical_whitened_embeddings():
    # Columns with zero mean, unit variance and no correlation: C is the identity.
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert float(barlow_twins_loss(z, z.clone())) == pytest.approx(0.0, abs=1e-6)
    # Perfectly anti-correlated views: every diagonal term is (1 - (-1))^2 = 4.
    assert float(barlow_twins_loss(z, -z, lambd=0.0)) == pytest.approx(8.0, rel=1e-5)


def test_vicreg_terms_hand_computed():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) * 2
    # identical views, std = sqrt(16/3) > 1, no covariance: loss 0
    assert float(vicreg_loss(z, z.clone())) == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.zeros(4, 2)
    # invariance 0, variance hinge: 1 - sqrt(1e-4) per dimension, weight 25, summed over views
    expected = 25 * (1 - math.sqrt(1e-4)) * 2
    assert float(vicreg_loss(collapsed, collapsed.clone())) == pytest.approx(expected, rel=1e-5)


def test_dino_loss_is_cross_entropy_of_sharpened_teacher():
    student, teacher = torch.randn(3, 5), torch.randn(3, 5)
    center = torch.randn(1, 5)
    targets = F.softmax((teacher - center) / 0.04, dim=1)
    expected = -(targets * F.log_softmax(student / 0.1, dim=1)).sum(1).mean()
    assert float(dino_loss(student, teacher, center)) == pytest.approx(float(expected), abs=1e-5)


def test_ema_update_arithmetic_and_cosine_schedule():
    online, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        online.weight.fill_(1.0)
        target.weight.fill_(3.0)
    ema_update(online, target, 0.9)
    assert torch.allclose(target.weight, torch.full_like(target.weight, 0.9 * 3 + 0.1 * 1))
    assert cosine_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(0.99, 0.5) == pytest.approx(0.995)


def test_moco_queue_is_fifo():
    moco = build_method("moco", build_encoder("cnn"), projection_dim=4, queue_size=5)
    first = F.normalize(torch.randn(3, 4), dim=1)
    second = F.normalize(torch.randn(3, 4), dim=1)
    moco.enqueue(first)
    assert torch.allclose(moco.queue[:, :3], first.T) and int(moco.queue_ptr) == 3
    moco.enqueue(second)  # wraps around: slots 3, 4, then 0
    assert torch.allclose(moco.queue[:, 3:5], second[:2].T)
    assert torch.allclose(moco.queue[:, 0], second[2]) and int(moco.queue_ptr) == 1
    assert torch.allclose(moco.queue[:, 1:3], first[1:].T)  # older keys still there


def test_nnclr_neighbours_support_set_and_warm_up():
    from pretext.losses import nt_xent
    from pretext.methods.nnclr import nearest_neighbours

    support = F.normalize(torch.randn(50, 8), dim=1)
    z = F.normalize(torch.randn(6, 8), dim=1)
    brute = torch.stack([support[max(range(50), key=lambda j: float(q @ support[j]))] for q in z])
    assert torch.equal(nearest_neighbours(z, support), brute)

    nnclr = build_method("nnclr", build_encoder("cnn"), projection_dim=8, support_size=5)
    first, second = F.normalize(torch.randn(3, 8), dim=1), F.normalize(torch.randn(3, 8), dim=1)
    nnclr.remember(first)
    nnclr.remember(second)  # FIFO: slots 3, 4, then 0
    assert torch.allclose(nnclr.support[3:5], second[:2]) and torch.allclose(
        nnclr.support[0], second[2]
    )
    assert int(nnclr.support_ptr) == 1

    # While the support set fills (progress < start), the loss is SimCLR's on the two views.
    nnclr.eval()  # fixed batch-norm statistics, so both forward passes see the same network
    views = torch.randn(2, 4, 1, 28, 28)
    z1, z2 = nnclr.head(nnclr.encoder(views.flatten(0, 1))).chunk(2)
    assert float(nnclr(views)) == pytest.approx(float(nt_xent(z1, z2, nnclr.temperature)), abs=1e-5)
    nnclr.after_step(0.5)  # then each view's positive is its neighbour in the support set
    n1 = nearest_neighbours(F.normalize(z1, dim=1), nnclr.support)
    n2 = nearest_neighbours(F.normalize(z2, dim=1), nnclr.support)
    expected = (nt_xent(n1, z2, nnclr.temperature) + nt_xent(z1, n2, nnclr.temperature)) / 2
    assert float(nnclr(views)) == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_each_method_trains_resumes_and_transfers(name, tiny_data, tmp_path):
    cfg = PretrainConfig(
        method=name,
        data_dir=str(tiny_data),
        out=str(tmp_path / "run"),
        epochs=2,
        batch_size=16,
        threads=1,
        knn_monitor=0,
    )
    summary = pretrain(cfg)
    assert math.isfinite(summary["final_loss"])
    encoder = load_encoder(tmp_path / "run")
    assert encoder(torch.zeros(2, 1, 28, 28)).shape == (2, 100)
    # resuming a finished run of any method restores every part of it (targets, queues)
    again = pretrain(replace(cfg, resume=True))
    assert again["final_loss"] == summary["final_loss"]


def test_unknown_method_is_a_clear_error(tiny_data, tmp_path):
    from pretext import PretextError

    with pytest.raises(PretextError, match="unknown method 'nope'"):
        build_method("nope", build_encoder("cnn"))
