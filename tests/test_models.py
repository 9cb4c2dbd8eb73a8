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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_pool2x2_equals_max_pool2d_values_and_gradients_ties_included(dtype):
    from pretext.models import max_pool2x2

    torch.manual_seed(0)
    x = torch.randn(6, 3, 8, 10, dtype=dtype).relu()  # zeros tie in many windows
    x[:, :, 2:6, 2:6] = 0.7  # flat patches tie at a positive value, as background does
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = 5.0  # a tie on a diagonal
    grad = torch.randn(6, 3, 4, 5, dtype=dtype)
    results = []
    for pool in (max_pool2x2, lambda t: torch.nn.functional.max_pool2d(t, 2)):
        leaf = x.clone().requires_grad_(True)
        out = pool(leaf)
        out.backward(grad)
        results.append((out.detach(), leaf.grad))
    (ours, our_grad), (aten, aten_grad) = results
    assert torch.equal(ours, aten)
    assert torch.equal(our_grad, aten_grad)  # one winner per window, the same one
    assert (our_grad != 0).sum() <= grad.numel()
    with torch.no_grad():
        assert torch.equal(max_pool2x2(x), aten)


def test_max_pool2x2_odd_sizes_fall_back():
    from pretext.models import max_pool2x2

    x = torch.randn(2, 3, 7, 9, requires_grad=True)
    assert torch.equal(max_pool2x2(x), torch.nn.functional.max_pool2d(x, 2))


def test_cnn_forward_and_gradients_unchanged_by_the_fast_pooling():
    import torch.nn.functional as F

    torch.manual_seed(0)
    encoder = build_encoder("cnn")
    x = torch.randn(16, 1, 28, 28)

    def reference(m, x):
        x = F.max_pool2d(F.relu(m.conv1(x)), 2)
        x = F.max_pool2d(F.relu(m.conv2(x)), 2)
        return F.relu(m.fc(x.flatten(1)))

    grads = []
    for forward in (encoder, lambda t: reference(encoder, t)):
        encoder.zero_grad()
        out = forward(x)
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in encoder.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        assert torch.equal(a, b)
