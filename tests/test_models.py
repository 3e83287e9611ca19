import copy

import pytest
import torch
from torch import nn

from fabook import models

IMAGE_SHAPES = [(1, 8, 8), (3, 25, 25), (1, 28, 28), (3, 32, 32), (3, 96, 96)]
SERIES_SHAPES = [(1, 24), (3, 40), (1, 1460)]


def output(model: nn.Module, shape: tuple[int, ...], n: int = 3) -> torch.Tensor:
    torch.manual_seed(0)
    return model.eval()(torch.randn(n, *shape))


def weighted(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


@pytest.mark.parametrize("shape", [(4,), (13,), (1, 8, 8), (3, 32, 32), (2, 40)])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_mlp_flattens_any_shape(shape, batch_norm):
    model = models.build("mlp", shape, 5, batch_norm=batch_norm)
    assert output(model, shape).shape == (3, 5)
    assert len(weighted(model)) == 3  # default depth 2 + head
    assert {m.out_features for m in weighted(model)[:-1]} == {256}
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == batch_norm


def test_mlp_width_depth_activation():
    model = models.build("mlp", (10,), 3, width=7, depth=4, activation="tanh")
    assert [m.out_features for m in weighted(model)] == [7, 7, 7, 7, 3]
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 4
    assert len(weighted(models.build("mlp", (10,), 3, depth=0))) == 1


@pytest.mark.parametrize("activation, cls", [("relu", nn.ReLU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid)])
@pytest.mark.parametrize("name, shape", [("mlp", (6,)), ("cnn", (1, 8, 8)), ("cnn1d", (2, 30))])
def test_activations(name, shape, activation, cls):
    model = models.build(name, shape, 4, activation=activation)
    acts = [m for m in model.modules() if isinstance(m, nn.ReLU | nn.Tanh | nn.Sigmoid)]
    assert acts and all(type(m) is cls for m in acts)
    assert output(model, shape).shape == (3, 4)


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_cnn_images(shape, batch_norm):
    model = models.build("cnn", shape, 10, batch_norm=batch_norm)
    assert output(model, shape).shape == (3, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64]
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == batch_norm
    assert all((c.bias is None) == batch_norm for c in convs)


def test_cnn_depth():
    model = models.build("cnn", (3, 32, 32), 10, width=8, depth=4)
    assert [c.out_channels for c in model.modules() if isinstance(c, nn.Conv2d)] == [8, 16, 32, 64]
    assert output(model, (3, 32, 32)).shape == (3, 10)


@pytest.mark.parametrize("shape", SERIES_SHAPES)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_cnn1d_series_uses_conv2d_only(shape, batch_norm):
    model = models.build("cnn1d", shape, 6, batch_norm=batch_norm)
    assert output(model, shape).shape == (3, 6)
    assert not any(isinstance(m, nn.Conv1d | nn.BatchNorm1d) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(c.kernel_size[0] == 1 for c in convs)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == batch_norm


def test_resnet20_matches_he_et_al():
    model = models.build("resnet20", (3, 32, 32), 10)
    layers = weighted(model)
    assert len(layers) == 20  # conv1 + 18 block convs + fc; option-A shortcuts have no weights
    assert sum(isinstance(m, nn.Conv2d) for m in layers) == 19
    assert models.count_parameters(model) == 269_722  # "0.27M" in He et al. 2016, Table 6
    assert output(model, (3, 32, 32)).shape == (3, 10)


@pytest.mark.parametrize("depth, params", [(32, 0.46e6), (44, 0.66e6), (56, 0.85e6)])
def test_resnet20_depths(depth, params):
    model = models.build("resnet20", (3, 32, 32), 10, depth=depth)
    assert len(weighted(model)) == depth
    assert models.count_parameters(model) == pytest.approx(params, rel=0.01)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 25, 25), (1, 28, 28)])
def test_resnet20_other_images_and_width(shape):
    model = models.build("resnet20", shape, 7, width=0.5, batch_norm=False)
    assert output(model, shape).shape == (3, 7)
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)][-1] == 32
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # always on


def test_resnet18_small_and_large_inputs():
    small = models.build("resnet18", (3, 32, 32), 10)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    assert output(small, (3, 32, 32), n=2).shape == (2, 10)
    large = models.build("resnet18", (1, 64, 64), 4)
    assert large.conv1.kernel_size == (7, 7) and large.conv1.in_channels == 1
    assert output(large, (1, 64, 64), n=2).shape == (2, 4)
    assert models.count_parameters(small) == 11_173_962


def test_resnet50_width_per_group():
    default = models.build("resnet50", (3, 32, 32), 10)
    narrow = models.build("resnet50", (1, 28, 28), 10, width=32)
    assert narrow.layer1[0].conv1.out_channels == 32 and default.layer1[0].conv1.out_channels == 64
    assert models.count_parameters(narrow) < models.count_parameters(default)
    assert output(narrow, (1, 28, 28), n=2).shape == (2, 10)


@pytest.mark.parametrize(
    "name, shape, kwargs, match",
    [
        ("vgg", (3, 32, 32), {}, "'vgg'.*mlp, cnn, cnn1d, resnet20, resnet18, resnet50"),
        ("cnn", (13,), {}, r"\(13,\).*\(C, H, W\)"),
        ("cnn", (3, 4, 4), {}, r"\(3, 4, 4\).*H, W >= 8"),
        ("cnn", (1, 8, 8), {"depth": 4}, r"\(1, 8, 8\).*2\*\*depth = 16"),
        ("cnn1d", (1, 28, 28), {}, r"\(1, 28, 28\).*\(C, L\)"),
        ("cnn1d", (1, 4), {}, r"\(1, 4\).*L >= 2\*\*depth = 8"),
        ("resnet20", (30,), {}, r"\(30,\).*\(C, H, W\)"),
        ("resnet18", (2, 40), {}, r"\(2, 40\).*\(C, H, W\)"),
        ("resnet20", (3, 32, 32), {"depth": 21}, "6n \\+ 2.*21"),
        ("resnet20", (3, 32, 32), {"width": 0}, "got 0"),
        ("resnet18", (3, 32, 32), {"width": 2}, "resnet18 does not support width.*2"),
        ("resnet18", (3, 32, 32), {"depth": 34}, "fixed depth of 18.*34"),
        ("resnet50", (3, 32, 32), {"width": 1.5}, "width_per_group.*1.5"),
        ("resnet18", (3, 32, 32), {"activation": "tanh"}, "ReLU only.*'tanh'"),
        ("mlp", (4,), {"activation": "gelu"}, "'gelu'.*relu, tanh, sigmoid"),
        ("mlp", (4,), {"width": 2.5}, "got 2.5"),
        ("mlp", (4,), {"depth": -1}, "got -1"),
        ("mlp", (0,), {}, r"got \(0,\)"),
    ],
)
def test_bad_combinations(name, shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.build(name, shape, 10, **kwargs)


@pytest.mark.parametrize(
    "name, shape",
    [("mlp", (6,)), ("cnn", (1, 8, 8)), ("cnn1d", (2, 30)), ("resnet20", (3, 8, 8)), ("resnet18", (1, 8, 8)),
     ("lenet", (1, 28, 28))],
)  # fmt: skip
def test_copy_and_backward(name, shape):
    """fabook.convert deep-copies models; every parameter must get a gradient."""
    model = models.build(name, shape, 3, batch_norm=True)
    assert torch.equal(output(copy.deepcopy(model), shape), output(model, shape))
    model.train()(torch.randn(4, *shape)).square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_lenet_is_biotorchs():
    """conv 6-16-120 (5x5, two max-pools) on 32x32, fc 84 -> ReLU, the head; Xavier-uniform, zero biases."""
    model = models.build("lenet", (1, 32, 32), 10)
    sizes = [(m.in_channels, m.out_channels) if isinstance(m, nn.Conv2d) else (m.in_features, m.out_features)
             for m in weighted(model)]  # fmt: skip
    assert sizes == [(1, 6), (6, 16), (16, 120), (120, 84), (84, 10)]
    assert models.count_parameters(model) == 156 + 2416 + 48120 + 10164 + 850
    assert [name for name, _ in model.named_children()][-3:] == ["fc4", "act4", "head"]
    assert not hasattr(model, "resize")
    for layer in weighted(model):  # Xavier-uniform: bound sqrt(6 / (fan_in + fan_out))
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        assert layer.weight.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5 and not layer.bias.any()
        assert layer.weight.std() > 0.8 * (2 / (fan_in + fan_out)) ** 0.5
    assert output(model, (1, 32, 32)).shape == (3, 10)


def test_lenet_resizes_other_images_bilinearly():
    torch.manual_seed(1)
    small, native = models.build("lenet", (3, 28, 28), 4), models.build("lenet", (3, 32, 32), 4)
    native.load_state_dict(small.state_dict())
    x = torch.randn(2, 3, 28, 28)
    resized = nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(small(x), native(resized))
    with pytest.raises(ValueError, match="takes no width or depth; got width=3"):
        models.build("lenet", (1, 28, 28), 10, width=3)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="got 0"):
        models.build("mlp", (4,), 0)


@pytest.mark.parametrize(("name", "expansion"), [("resnet18", 1), ("resnet50", 4)])
def test_narrow_resnets_scale_every_stage(name, expansion):
    narrow = models.build(name, (1, 28, 28), 10, base_width=8)
    assert narrow.conv1.out_channels == 8 and narrow.conv1.kernel_size == (3, 3)
    assert narrow.layer1[0].conv1.in_channels == 8 and narrow.fc.in_features == 64 * expansion
    assert [stage[0].conv1.out_channels for stage in (narrow.layer2, narrow.layer3, narrow.layer4)] == [
        16,
        32,
        64,
    ]
    assert output(narrow, (1, 28, 28), n=2).shape == (2, 10)
    full = models.build(name, (3, 224, 224), 5, base_width=4)
    assert full.conv1.kernel_size == (7, 7) and full.conv1.out_channels == 4
    assert output(full, (3, 224, 224), n=1).shape == (1, 5)
    same = models.build(name, (3, 32, 32), 10, base_width=64)
    assert models.count_parameters(same) == models.count_parameters(models.build(name, (3, 32, 32), 10))


@pytest.mark.parametrize(
    ("name", "base_width", "match"),
    [("mlp", 8, "base_width is for resnet18 and resnet50 only"), ("resnet18", 0, "positive integer.*got 0"),
     ("resnet50", 2.5, "got 2.5")],
)  # fmt: skip
def test_bad_base_width(name, base_width, match):
    with pytest.raises(ValueError, match=match):
        models.build(name, (1, 28, 28), 10, base_width=base_width)
