"""Downstream evaluation of saved encoders: fine-tuning, linear probe, kNN, retrieval and the
few-label study against a from-scratch baseline."""

from pretext.evaluate.classify import accuracy, extract_features, finetune, linear_probe
from pretext.evaluate.study import few_label_comparison, run_study

__all__ = [
    "accuracy",
    "extract_features",
    "few_label_comparison",
    "finetune",
    "linear_probe",
    "run_study",
]
