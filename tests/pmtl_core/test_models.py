"""Models: shapes, JSON rebuild, the width option, and K stacked models under vmap."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from pmtl_core.models import MultiTaskModel, build_model, lenet_encoder, mlp_encoder

LENET = {"encoder": {"type": "lenet"}, "heads": [10, 10]}
MLP = {"encoder": {"type": "mlp", "in_features": 7, "hidden": [16, 8], "out": 4}, "heads": [3, 2]}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_lenet_shapes(device):
    model = build_model(LENET).to(device)
    z, outs = model(torch.rand(5, 1, 36, 36, device=device))
    assert z.shape == (5, 50)
    assert [o.shape for o in outs] == [(5, 10), (5, 10)]
    assert (z >= 0).all()  # the representation ends with a ReLU


def test_lenet_is_the_papers_layer_stack():
    layers = list(lenet_encoder())
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 10, (9, 9)),
        (10, 20, (5, 5)),
    ]
    fc = [m for m in layers if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fc] == [(500, 50)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in layers) == 2


def test_mlp_shapes(device):
    model = build_model(MLP).to(device)
    z, outs = model(torch.randn(6, 7, device=device))
    assert z.shape == (6, 4)
    assert [o.shape for o in outs] == [(6, 3), (6, 2)]
    assert [m.out_features for m in mlp_encoder(7, (16, 8), 4) if isinstance(m, nn.Linear)] == [
        16,
        8,
        4,
    ]


def test_mlp_representation_can_be_linear():
    relu = mlp_encoder(7, (16,), 1)
    linear = mlp_encoder(7, (16,), 1, out_relu=False)
    assert isinstance(list(relu)[-1], nn.ReLU) and isinstance(list(linear)[-1], nn.Linear)
    model = build_model(
        {"encoder": {"type": "mlp", "in_features": 7, "out": 1, "out_relu": False}, "heads": [2]}
    )
    z, _ = model(torch.randn(64, 7))
    assert (z < 0).any()


def test_width_grows_the_encoder_not_the_heads():
    narrow = build_model({"encoder": {"type": "lenet", "width": 1}, "heads": [10, 10]})
    wide = build_model({"encoder": {"type": "lenet", "width": 4}, "heads": [10, 10]})
    assert n_params(wide.encoder) > 4 * n_params(narrow.encoder)
    assert n_params(wide.heads) == n_params(narrow.heads)
    z, _ = wide(torch.rand(2, 1, 36, 36))
    assert z.shape == (2, 50)


def test_models_have_no_buffers():
    # BatchNorm-style running statistics cannot live under vmap over stacked parameters
    for config in (LENET, MLP):
        model = build_model(config)
        assert list(model.buffers()) == []
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_config_round_trip_rebuilds_the_same_function(device):
    torch.manual_seed(1)
    original = build_model(LENET).to(device)
    text = json.dumps(LENET)
    clone = build_model(json.loads(text)).to(device)
    clone.load_state_dict(original.state_dict())
    x = torch.rand(3, 1, 36, 36, device=device)
    for a, b in zip(original(x)[1], clone(x)[1], strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "config",
    [
        {"encoder": {"type": "resnet"}, "heads": [10]},
        {"encoder": {"type": "lenet", "colour": True}, "heads": [10]},
        {"encoder": {"type": "lenet"}, "heads": []},
        {"encoder": {"type": "lenet", "width": 0}, "heads": [10]},
        {"encoder": {"type": "mlp"}, "heads": [2]},
        {"heads": [2]},
    ],
    ids=["unknown-type", "extra-key", "no-heads", "zero-width", "mlp-no-inputs", "no-encoder"],
)
def test_malformed_configs_are_value_errors(config):
    with pytest.raises(ValueError, match="invalid model config"):
        build_model(config)


def test_model_needs_a_head():
    with pytest.raises(ValueError, match="at least one head"):
        MultiTaskModel(nn.Identity(), [])


@pytest.mark.parametrize(
    ("config", "shape"), [(LENET, (1, 36, 36)), (MLP, (7,))], ids=["lenet", "mlp"]
)
def test_stacked_models_under_vmap_match_a_loop(config, shape, device):
    """K models as one: functional_call + vmap over stacked parameters, one shared batch."""
    k = 3
    models = [build_model(config).to(device) for _ in range(k)]
    params, buffers = stack_module_state(models)
    base = build_model(config).to("meta")
    x = torch.rand(8, *shape, device=device)

    def run(p, b, inputs):
        z, outs = functional_call(base, (p, b), (inputs,))
        return z, tuple(outs)

    z, outs = vmap(run, in_dims=(0, 0, None))(params, buffers, x)
    assert z.shape[0] == k
    assert [o.shape for o in outs] == [(k, 8, n) for n in config["heads"]]
    for i, model in enumerate(models):
        z_i, outs_i = model(x)
        torch.testing.assert_close(z[i], z_i, atol=1e-5, rtol=1e-5)
        for o, o_i in zip(outs, outs_i, strict=True):
            torch.testing.assert_close(o[i], o_i, atol=1e-5, rtol=1e-5)

    # the gradient of the summed outputs gives every model its own gradient
    total = sum(o.square().sum() for o in outs)
    grads = torch.autograd.grad(total, list(params.values()))
    for i, model in enumerate(models):
        loss_i = sum(o.square().sum() for o in model(x)[1])
        ref = torch.autograd.grad(loss_i, list(model.parameters()))
        for g, r in zip(grads, ref, strict=True):
            torch.testing.assert_close(g[i], r, atol=1e-5, rtol=1e-4)
