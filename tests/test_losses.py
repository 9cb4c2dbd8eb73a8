import math

import pytest
import torch

from pretext.losses import nt_xent


def reference_nt_xent(z1, z2, t):
    """The formula as written, mean over 2N anchors:
    l(i,j) = -log(exp(s_ij/t) / sum_{k != i} exp(s_ik/t))."""
    z = torch.cat([z1, z2]).double()
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        sim = [float(torch.nn.functional.cosine_similarity(z[i], z[k], dim=0)) for k in range(n2)]
        denominator = sum(math.exp(sim[k] / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim[j] / t) / denominator)
    return total / n2


@pytest.mark.parametrize(
    "n,d,t",
    [(2, 3, 0.5), (5, 8, 0.5), (7, 16, 0.1), (32, 100, 0.5), (3, 4, 2.0), (6, 8, 0.02)],
)
def test_matches_reference_formula(n, d, t):
    z1, z2 = torch.randn(n, d), torch.randn(n, d)
    assert float(nt_xent(z1, z2, t)) == pytest.approx(reference_nt_xent(z1, z2, t), abs=1e-5)


def test_hand_computed_value():
    # Two images, orthogonal unit embeddings: each anchor sees its positive at cos 1 and two
    # negatives at cos 0, so l = -log(e^2 / (e^2 + 2)) at t = 0.5.
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert float(nt_xent(z1, z1.clone(), 0.5)) == pytest.approx(expected, abs=1e-6)


def test_scale_invariant_and_stable_at_small_temperature():
    z1, z2 = torch.randn(8, 4), torch.randn(8, 4)
    assert float(nt_xent(z1 * 100, z2, 0.5)) == pytest.approx(float(nt_xent(z1, z2, 0.5)), abs=1e-5)
    assert torch.isfinite(nt_xent(z1, z2, 1e-4))


def test_shifted_and_log_softmax_forms_agree():
    """Both computations of the loss (the fixed shift 1/t, and a row-wise logsumexp for small t)
    give the same value and gradient, so the switch between them is invisible."""
    from pretext.losses import _nt_xent_log_softmax, _SimilarityCrossEntropy

    z = torch.nn.functional.normalize(torch.randn(24, 6, dtype=torch.double), dim=1)
    for t in (0.05, 0.2, 1.0):
        a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
        shifted, plain = _SimilarityCrossEntropy.apply(a, t), _nt_xent_log_softmax(b, t)
        shifted.backward()
        plain.backward()
        assert shifted.item() == pytest.approx(plain.item(), abs=1e-10)
        assert torch.allclose(a.grad, b.grad, atol=1e-10)


def test_gradient_flows_to_both_views():
    z1, z2 = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    nt_xent(z1, z2).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


@pytest.mark.parametrize("n,t", [(1, 0.5), (4, 0.0), (4, -1.0)])
def test_rejects_batch_of_one_and_bad_temperature(n, t):
    with pytest.raises(ValueError):
        nt_xent(torch.randn(n, 3), torch.randn(n, 3), t)


def test_hand_written_backward_matches_autograd():
    """The loss's own backward ((P + P^T - 2Y) z / (2N t)) against autograd through the plain
    formula, and gradcheck (which moves z off the unit sphere: the formula holds there too)."""
    from pretext.losses import _SimilarityCrossEntropy

    z = torch.nn.functional.normalize(torch.randn(10, 5, dtype=torch.double), dim=1)
    assert torch.autograd.gradcheck(
        lambda x: _SimilarityCrossEntropy.apply(x, 0.3), (z.requires_grad_(),)
    )

    def autograd_nt_xent(z1, z2, t):
        z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
        logits = (z @ z.T / t).masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
        n = len(z1)
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        return torch.nn.functional.cross_entropy(logits, targets)

    z1, z2 = torch.randn(16, 8, requires_grad=True), torch.randn(16, 8, requires_grad=True)
    ours = torch.autograd.grad(nt_xent(z1, z2, 0.2) * 3.0, (z1, z2))
    plain = torch.autograd.grad(autograd_nt_xent(z1, z2, 0.2) * 3.0, (z1, z2))
    for a, b in zip(ours, plain, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_onednn_and_plain_products_agree(monkeypatch):
    """NT-Xent's products go through oneDNN on CPU where torch has the op, else through `@`:
    the same loss and gradients either way (float32 rounding apart)."""
    import pretext.matmul

    if pretext.matmul._ONEDNN_LINEAR is None:
        pytest.skip("this torch build has no oneDNN linear op: `@` is the only path")
    z1, z2 = torch.randn(64, 32, requires_grad=True), torch.randn(64, 32, requires_grad=True)
    results = []
    for product in (pretext.matmul._ONEDNN_LINEAR, None):
        monkeypatch.setattr(pretext.matmul, "_ONEDNN_LINEAR", product)
        loss = nt_xent(z1, z2, 0.2)
        results.append((loss.detach(), *torch.autograd.grad(loss, (z1, z2))))
    for a, b in zip(*results, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    a, b = torch.randn(9, 5), torch.randn(7, 5)
    assert torch.allclose(pretext.matmul.product_transposed(a, b), a @ b.T, atol=1e-6)


@pytest.mark.parametrize("t", [0.01, 0.2])
def test_float32_under_bf16_autocast(t):
    """Both forms compute in float32 even inside a bf16 autocast region (as pretraining with
    --bf16 runs them)."""
    z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = nt_xent(z1, z2, t)
    assert mixed.dtype == torch.float32
    assert float(mixed) == pytest.approx(float(nt_xent(z1, z2, t)), abs=1e-5)
