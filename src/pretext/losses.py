"""Loss functions: pure functions of tensors, no state."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pretext.matmul import product_transposed


def _partners(count: int, device: torch.device) -> torch.Tensor:
    """Index of each row's positive in the stacked [z1; z2]: the other view of its image."""
    return torch.arange(count, device=device).roll(count // 2)


class _SimilarityCrossEntropy(torch.autograd.Function):
    """NT-Xent on L2-normalised rows z (2N x D), with a hand-written backward.

    With E = exp((z z^T - 1) / t) off the diagonal (symmetric: every entry in (0, 1], the
    shift 1/t being the largest logit a cosine allows, so nothing overflows), D its row sums
    and P = D^-1 E the softmax, the loss of anchor i is log D_i - (z_i . z_partner - 1) / t and
    the gradient is (P + P^T - 2Y) z / (2N t) = (D^-1 E z + E D^-1 z - 2 z_partner) / (2N t):
    one product of E with [z, D^-1 z]. Autograd would write the 2N x 2N gradient of the logits
    through cross-entropy, log-softmax and the diagonal mask, and read P twice."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, temperature: float) -> torch.Tensor:
        partner = _partners(z.shape[0], z.device)
        with torch.autocast(z.device.type, enabled=False):  # float32 under bf16 autocast too
            shift = torch.full((len(z),), -1.0 / temperature, device=z.device, dtype=z.dtype)
            exp = product_transposed(z / temperature, z, shift).exp_()
            exp.fill_diagonal_(0.0)  # an anchor is not its own negative
            total = exp.sum(1)
            positive = (z * z[partner]).sum(1)
        ctx.save_for_backward(z, exp, total, partner)
        ctx.temperature = temperature
        return (total.log() - (positive - 1.0) / temperature).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, exp, total, partner = ctx.saved_tensors
        scaled = z / total[:, None]
        both = product_transposed(exp, torch.cat([z.T, scaled.T]))  # [E z, E D^-1 z] (E = E^T)
        dim = z.shape[1]
        weighted = both[:, :dim].div_(total[:, None]).add_(both[:, dim:])
        weighted.sub_(z[partner], alpha=2.0)
        return weighted.mul_(grad / (len(z) * ctx.temperature)), None


def _nt_xent_log_softmax(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """The same loss through a row-wise logsumexp: for temperatures so small that exp((cos - 1)
    / t) could underflow to 0 for every negative of an anchor."""
    partner = _partners(z.shape[0], z.device)
    with torch.autocast(z.device.type, enabled=False):  # float32 under bf16 autocast too
        logits = (z / temperature) @ z.T
        self_pairs = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
        return F.cross_entropy(logits.masked_fill(self_pairs, -torch.inf), partner)


# Below this temperature the fixed shift of _SimilarityCrossEntropy could underflow
# (exp(-2 / t) < 1e-30 or so); such temperatures take the log-softmax path.
SHIFTED_MIN_TEMPERATURE = 0.05


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (SimCLR) averaged over all 2N anchors.

    Row i of z1 and row i of z2 are two views of one image (the positive pair); every other of
    the 2N - 2 views is a negative. Stable at any t: the logits are shifted by their largest
    possible value (1/t), and temperatures below 0.05 take a row-wise logsumexp instead.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z1.shape[0]
    if n < 2 or z2.shape[0] != n:
        raise ValueError(f"nt_xent needs two batches of equal size >= 2, got {n} and {z2.shape[0]}")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    if temperature < SHIFTED_MIN_TEMPERATURE:
        return _nt_xent_log_softmax(z, temperature)
    return _SimilarityCrossEntropy.apply(z, temperature)


def info_nce(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float
) -> torch.Tensor:
    """MoCo's InfoNCE: each query's positive is its key; the queue (D x K) holds the negatives.
    q and k are L2-normalised here; the queue is assumed normalised."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    q, k = F.normalize(q.float(), dim=1), F.normalize(k.float(), dim=1)
    positive = (q * k).sum(1, keepdim=True)
    negative = q @ queue
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D(p, z) = -cos(p, stopgrad(z)), averaged over the batch."""
    return -F.cosine_similarity(p.float(), z.detach().float(), dim=1).mean()


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's 2 - 2 cos(p, stopgrad(z)), averaged over the batch."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=1)).mean()


def off_diagonal(m: torch.Tensor) -> torch.Tensor:
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3) -> torch.Tensor:
    """Barlow Twins: the cross-correlation of batch-standardised embeddings should be the
    identity: (1 - C_ii)^2 summed, plus lambd * C_ij^2 summed off the diagonal."""
    n = z1.shape[0]
    z1 = (z1.float() - z1.float().mean(0)) / (z1.float().std(0, unbiased=False) + 1e-6)
    z2 = (z2.float() - z2.float().mean(0)) / (z2.float().std(0, unbiased=False) + 1e-6)
    c = z1.T @ z2 / n
    return (torch.diagonal(c) - 1).pow(2).sum() + lambd * off_diagonal(c).pow(2).sum()


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    invariance: float = 25.0,
    variance: float = 25.0,
    covariance: float = 1.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VICReg: mean squared distance between views, a hinge keeping each dimension's standard
    deviation above 1, and the squared off-diagonal covariances (divided by the dimension)."""
    z1, z2 = z1.float(), z2.float()
    n, d = z1.shape
    sim = F.mse_loss(z1, z2)
    std = torch.cat([torch.sqrt(z.var(0) + eps) for z in (z1, z2)])
    var = F.relu(1 - std).mean() * 2  # mean over each view's dimensions, summed over views
    cov = 0.0
    for z in (z1, z2):
        zc = z - z.mean(0)
        cov = cov + off_diagonal(zc.T @ zc / (n - 1)).pow(2).sum() / d
    return invariance * sim + variance * var + covariance * cov


def dino_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    center: torch.Tensor,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> torch.Tensor:
    """DINO: cross-entropy from the centred, sharpened teacher distribution to the student's."""
    targets = F.softmax((teacher.float() - center) / teacher_temperature, dim=1).detach()
    return -(targets * F.log_softmax(student.float() / student_temperature, dim=1)).sum(1).mean()
