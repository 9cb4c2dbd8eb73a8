"""Self-supervised methods behind one small interface (see `base.SSLMethod`), by name."""

from __future__ import annotations

import inspect

from torch import nn

from pretext.errors import PretextError
from pretext.methods.base import SSLMethod
from pretext.methods.byol import BYOL
from pretext.methods.dino import DINO
from pretext.methods.moco import MoCo
from pretext.methods.nnclr import NNCLR
from pretext.methods.redundancy import BarlowTwins, VICReg
from pretext.methods.simclr import SimCLR
from pretext.methods.simsiam import SimSiam

METHODS: dict[str, type[SSLMethod]] = {
    "simclr": SimCLR,
    "moco": MoCo,
    "nnclr": NNCLR,
    "byol": BYOL,
    "simsiam": SimSiam,
    "barlow": BarlowTwins,
    "vicreg": VICReg,
    "dino": DINO,
}


def available_methods() -> dict[str, type[SSLMethod]]:
    return dict(METHODS)


# The options a user sets for a method; each method's signature declares which it takes and
# its defaults, so `pretext pretrain --method byol` trains BYOL with BYOL's own head.
USER_OPTIONS = ("temperature", "projection_hidden", "projection_dim")


# Head sizes for ResNet backbones (hidden width, output width), as solo-learn's ResNet-18
# configs give them after each paper; the small encoders keep each method's own defaults.
RESNET_HEADS: dict[str, dict[str, int]] = {
    "simclr": {"projection_hidden": 2048, "projection_dim": 256},
    "moco": {"projection_hidden": 2048, "projection_dim": 256},
    "nnclr": {"projection_hidden": 2048, "projection_dim": 256},
    "byol": {"projection_hidden": 4096, "projection_dim": 256},
    "simsiam": {"projection_hidden": 2048, "projection_dim": 2048},
    "barlow": {"projection_hidden": 2048, "projection_dim": 2048},
    "vicreg": {"projection_hidden": 2048, "projection_dim": 2048},
    "dino": {"projection_hidden": 2048},
}


RESNETS = ("resnet18", "resnet34", "resnet50")


def head_defaults(name: str, encoder: str) -> dict:
    """The head sizes a method takes by default on the encoder named `encoder`: the ResNet
    sizes of RESNET_HEADS for resnet18/34/50, none (the method's own) for the others."""
    return dict(RESNET_HEADS.get(name, {})) if encoder in RESNETS else {}


def method_options(name: str, **given) -> dict:
    """The method's USER_OPTIONS, `given` values (None: not given) over its defaults, and any
    other keyword of its signature that is given; an option it does not take is refused."""
    methods = available_methods()
    if name not in methods:
        raise PretextError(f"unknown method {name!r}: use one of {', '.join(methods)}")
    params = dict(inspect.signature(methods[name]).parameters)
    params.pop("encoder")
    for key, value in given.items():
        if value is not None and key not in params:
            takes = ", ".join(f"--{k.replace('_', '-')}" for k in USER_OPTIONS if k in params)
            raise PretextError(
                f"--{key.replace('_', '-')} does not apply to {name} (it takes {takes})"
            )
    chosen = {k: params[k].default for k in USER_OPTIONS if k in params}
    chosen |= {k: v for k, v in given.items() if v is not None}
    if chosen.get("projection_dim") == 0 and name != "simclr":
        raise PretextError(f"{name} needs a projection head: --projection-dim must be >= 1")
    return chosen


def build_method(name: str, encoder: nn.Module, **given) -> SSLMethod:
    """A method by name, with `method_options`' checked options."""
    options = method_options(name, **given)  # first: an unknown name is refused there
    return METHODS[name](encoder, **options)


__all__ = [
    "METHODS",
    "RESNET_HEADS",
    "USER_OPTIONS",
    "SSLMethod",
    "available_methods",
    "build_method",
    "head_defaults",
    "method_options",
]
