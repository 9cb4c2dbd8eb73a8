"""a @ b.T for float32 CPU matrices through oneDNN where torch has it (NT-Xent's products,
the kNN / retrieval / neighbour similarities), `@` elsewhere."""

from __future__ import annotations

import torch

# oneDNN's float32 matrix product, as torch.compile's CPU code calls it (a private op: absent
# from some builds, hence the fallback to `@`, which calls MKL's sgemm). On our CPU it is the
# faster of the two for these shapes, in float32 all the same (BENCHMARKS.md, "Throughput").
_ONEDNN_LINEAR = (
    getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if torch.backends.mkldnn.is_available()
    else None
)


def product_transposed(
    a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """a @ b.T (+ bias, one value per column), through oneDNN for float32 on CPU where torch
    has it."""
    on_cpu = a.device.type == "cpu" and a.dtype == b.dtype == torch.float32
    if _ONEDNN_LINEAR is not None and on_cpu:
        return _ONEDNN_LINEAR(a.contiguous(), b.contiguous(), bias, "none", [], "")
    return a @ b.T if bias is None else torch.addmm(bias, a, b.T)
