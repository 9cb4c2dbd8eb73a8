"""Downstream evaluation of saved encoders: fine-tuning, linear probe, few-label comparison."""

from pretext.evaluate.classify import (
    accuracy,
    extract_features,
    few_label_comparison,
    finetune,
    linear_probe,
)

__all__ = ["accuracy", "extract_features", "few_label_comparison", "finetune", "linear_probe"]
