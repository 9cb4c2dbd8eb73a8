import pytest
import torch

from pretext import PretextError
from pretext.models import Classifier, ProjectionHead, build_encoder, count_parameters


def test_cnn_is_the_original_architecture():
    encoder = build_encoder("cnn")
    assert count_parameters(encoder) == 37_380
    out = encoder(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 100) and (out >= 0).all()  # ReLU output, as in the write-up
    kinds = (torch.nn.Conv2d, torch.nn.Conv2d, torch.nn.Linear)
    layers = list(encoder.children())
    assert len(layers) == 3 and all(map(isinstance, layers, kinds))


def test_cnn_bn_normalises_every_layer_of_the_original():
    plain, normed = build_encoder("cnn", seed=0), build_encoder("cnn-bn", seed=0)
    assert count_parameters(normed) == 37_380 + 2 * (10 + 20 + 100)
    assert set(plain.state_dict()) < set(normed.state_dict())
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 3 + 1
    # (the plain cnn leaves 32 of its 100 units dead or always on for this batch)
    out = normed(x)  # training mode: batch statistics
    assert out.shape == (64, 100) and (out >= 0).all()
    # each unit is standardised over the batch before its ReLU: none is dead, none always on
    positive = (out > 0).sum(0)
    assert (positive > 0).all() and (positive < 64).all()
    normed.eval()  # running statistics, as fine-tuning's evaluation and feature extraction use
    assert not torch.allclose(normed(x), out)


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


def write_up_cnn(m, x, plain_conv: bool = False):
    """The write-up's cnn through m's weights: ReLU, then ATen's pooling; with `plain_conv`,
    F.conv2d in place of m's convolution layers."""
    import torch.nn.functional as F

    def conv(layer, t):
        return F.conv2d(t, layer.weight, layer.bias) if plain_conv else layer(t)

    x = F.max_pool2d(F.relu(conv(m.conv1, x)), 2)
    x = F.max_pool2d(F.relu(conv(m.conv2, x)), 2)
    return F.relu(m.fc(x.flatten(1)))


def output_and_gradients(encoder, forward, x) -> list[torch.Tensor]:
    """forward(x), then the gradients of encoder's parameters for sum(out^2)."""
    encoder.zero_grad()
    out = forward(x)
    out.square().sum().backward()
    return [out.detach()] + [p.grad.clone() for p in encoder.parameters()]


def test_cnn_forward_and_gradients_unchanged_by_the_fast_layers():
    """The fast pooling, ReLU after pooling and the weight gradients by convolution compute the
    write-up's network: the same outputs bit for bit, the same gradients up to rounding."""
    torch.manual_seed(0)
    encoder = build_encoder("cnn")
    x = torch.randn(16, 1, 28, 28)
    ours = output_and_gradients(encoder, encoder, x)
    reference = output_and_gradients(encoder, lambda t: write_up_cnn(encoder, t, True), x)
    assert torch.equal(ours[0], reference[0])
    for a, b in zip(ours[1:], reference[1:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def test_relu_after_pooling_is_exact_values_and_gradients():
    """The cnn pools before its ReLUs; the write-up's order (ReLU, then pool), through the same
    convolution layers and ATen's pooling, gives the same bits, gradients included."""
    torch.manual_seed(0)
    encoder = build_encoder("cnn")
    x = torch.randn(16, 1, 28, 28)
    x[:, :, :10] = -0.4242  # a flat background: ties in many windows, at and below zero
    ours = output_and_gradients(encoder, encoder, x)
    theirs = output_and_gradients(encoder, lambda t: write_up_cnn(encoder, t), x)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("padding, bias", [(0, True), (1, False), (2, True)])
def test_conv2d_fast_grad_equals_conv2d(padding, bias):
    from pretext.models import Conv2dFastGrad

    torch.manual_seed(0)
    fast = Conv2dFastGrad(3, 4, kernel_size=3, padding=padding, bias=bias)
    plain = torch.nn.Conv2d(3, 4, kernel_size=3, padding=padding, bias=bias)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(5, 3, 9, 7)
    results = []
    for conv in (fast, plain):
        leaf = x.clone().requires_grad_(True)
        out = conv(leaf)
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        out.backward(grad)
        results.append([out.detach(), leaf.grad] + [p.grad for p in conv.parameters()])
    assert len(results[0]) == (4 if bias else 3)
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the plain path, the same values
        assert torch.equal(fast(x), plain(x))


def test_conv2d_fast_grad_on_a_first_layer_equals_conv2d():
    """One input channel and an input that needs no gradient (the cnn's conv1 on AVX2 CPUs):
    the weight and bias gradients of nn.Conv2d, whichever way this machine's cnn builds."""
    from pretext.models import Conv2dFastGrad

    torch.manual_seed(0)
    fast = Conv2dFastGrad(1, 10, kernel_size=5)
    plain = torch.nn.Conv2d(1, 10, kernel_size=5)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(6, 1, 28, 28)
    grad = torch.randn(6, 10, 24, 24)
    for conv in (fast, plain):
        conv(x).backward(grad)
    for ours, theirs in zip(fast.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "capability, channels, first",
    [("AVX512", 1, "Conv2d"), ("AVX2", 1, "Conv2dFastGrad"), ("AVX2", 3, "Conv2d")],
)
def test_cnn_first_convolution_follows_the_cpu(monkeypatch, capability, channels, first):
    """conv1 takes its weight gradient by convolution for grayscale input except on AVX-512
    CPUs; either way the same parameters, drawn alike, and conv2 always by convolution."""
    from pretext.models import Conv2dFastGrad

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    encoder = build_encoder("cnn", channels, seed=0)
    assert type(encoder.conv1).__name__ == first
    assert isinstance(encoder.conv2, Conv2dFastGrad)
    monkeypatch.undo()
    assert torch.equal(encoder.conv1.weight, build_encoder("cnn", channels, seed=0).conv1.weight)


def test_seeded_classifier_head_is_nn_linear_drawn_from_its_own_generator():
    torch.manual_seed(5)
    reference = torch.nn.Linear(100, 10)  # the global stream seeded with 5
    torch.manual_seed(123)  # the seeded head ignores the global state
    head = Classifier(build_encoder("cnn"), 10, seed=5).linear
    assert torch.equal(head.weight, reference.weight)
    assert torch.equal(head.bias, reference.bias)


def test_seeded_encoder_is_manual_seed_weights_without_touching_the_global_state():
    torch.manual_seed(7)
    reference = build_encoder("cnn")
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    seeded = build_encoder("cnn", seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream is untouched
    want = reference.state_dict()
    for name, got in seeded.state_dict().items():
        assert torch.equal(got, want[name]), name
    other = build_encoder("cnn", seed=8).state_dict()
    assert not torch.equal(other["conv1.weight"], seeded.state_dict()["conv1.weight"])


def test_loading_a_saved_encoder_leaves_the_global_random_state(pretrained_run):
    from pretext.rundir import load_encoder

    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    first = load_encoder(pretrained_run)
    assert torch.equal(torch.random.get_rng_state(), before)
    second = load_encoder(pretrained_run)
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name]), name
