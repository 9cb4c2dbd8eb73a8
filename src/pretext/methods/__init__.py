"""Self-supervised methods behind one small interface (see `base.SSLMethod`)."""

from pretext.methods.base import SSLMethod, build_method

__all__ = ["SSLMethod", "build_method"]
