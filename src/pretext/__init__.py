"""pretext: self-supervised pretraining of image encoders, with honest baselines."""

from pretext.errors import PretextError

__version__ = "0.1.0"
__all__ = ["PretextError", "__version__"]
