import pytest
import torch

from pretext import PretextError
from pretext.models import Classifier, ProjectionHead, build_encoder, count_parameters


def test_cnn_is_the_original_architecture():
    encoder = build_encoder("cnn")
    assert count_parameters(encoder) == 37_380
    out = encoder(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 100) and (out >= 0).all()  # ReLU output, as in the write-up
    assert [m.__class__.__name__ for m in encoder.children()] == ["Conv2d", "Conv2d", "Linear"]


@pytest.mark.parametrize("name", ["cnn-wide", "convnet"])
def test_larger_encoders(name):
    encoder = build_encoder(name)
    assert count_parameters(encoder) > 37_380
    assert encoder(torch.randn(3, 1, 28, 28)).shape == (3, encoder.embed_dim)


def test_convnet_takes_colour_and_other_sizes():
    encoder = build_encoder("convnet", in_channels=3, image_size=32)
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, encoder.embed_dim)


def test_head_and_classifier_shapes():
    encoder = build_encoder("cnn")
    assert ProjectionHead(100, 64, 16)(torch.randn(4, 100)).shape == (4, 16)
    assert Classifier(encoder, 10)(torch.randn(4, 1, 28, 28)).shape == (4, 10)


def test_unknown_encoder_and_wrong_size_are_clear_errors():
    with pytest.raises(PretextError, match="unknown encoder"):
        build_encoder("resnet999")
    with pytest.raises(PretextError, match="28x28"):
        build_encoder("cnn", image_size=32)
