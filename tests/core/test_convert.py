"""convert(): one TMAF per call site (never silently tied), and param_groups()."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import tmaf


class BasicBlock(nn.Module):
    """torchvision-style: one ``self.relu`` called at two call sites."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


def resnet_like() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         BasicBlock(8), BasicBlock(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 4), nn.ReLU())


@pytest.mark.parametrize("kind", ["diagonal", "tridiagonal"])
def test_reused_relu_gets_one_tmaf_per_call_site(kind):
    model = resnet_like().eval()
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    conv = tmaf.convert(copy.deepcopy(model), kind, example_input=x)
    acts = [m for _, m in tmaf.tmaf_modules(conv)]
    assert len(acts) == 1 + 2 * 2 + 1  # stem, 2 per block, head
    assert len({id(m.levels) for m in acts}) == len(acts)  # no tied parameters
    assert [m.num_channels for m in acts] == [8, 8, 8, 8, 8, 4]
    assert isinstance(conv[3].relu, tmaf.CallSites) and len(conv[3].relu.sites) == 2
    torch.testing.assert_close(conv(x), expected)  # ReLU-exact start
    # training one site leaves the other alone
    with torch.no_grad():
        conv[3].relu.sites[0].levels.add_(1.0)
    assert not torch.equal(conv[3].relu.sites[0].levels, conv[3].relu.sites[1].levels)
    conv(x)
    conv(x)  # counters reset at every forward of the root


def test_without_example_input_reuse_raises_clearly():
    model = tmaf.convert(resnet_like(), "diagonal", channel_dim=1)
    with pytest.raises(RuntimeError, match="called 2 times in one forward pass.*example_input"):
        model(torch.randn(2, 3, 8, 8))


def test_without_example_input_single_sites_work_lazily():
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.ReLU())
    x = torch.randn(4, 5)
    expected = model(x)
    tmaf.convert(model, "tridiagonal")
    torch.testing.assert_close(model(x), expected)
    assert [m.num_channels for _, m in tmaf.tmaf_modules(model)] == [7, 3]


def test_module_registered_under_two_names_is_split():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(5, 6), relu, nn.Linear(6, 3), relu)
    x = torch.randn(4, 5)
    tmaf.convert(model, "diagonal", example_input=x)
    assert model[1] is model[3] and isinstance(model[1], tmaf.CallSites)  # one per call, in call order
    assert [m.num_channels for m in model[1].sites] == [6, 3]
    model(x)


def test_convert_other_activations_channel_last_and_state_dict():
    model = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 6), nn.GELU())
    x = torch.randn(2, 3, 4)
    tmaf.convert(model, "banded2", activations=(nn.GELU,), example_input=x, channel_dim=-1)
    assert [m.bandwidth for _, m in tmaf.tmaf_modules(model)] == [2, 2]
    twin = copy.deepcopy(model)
    for p in twin.parameters():
        p.data.normal_()
    twin.load_state_dict(model.state_dict())
    torch.testing.assert_close(twin(x), model(x))


def test_convert_bad_arguments():
    with pytest.raises(TypeError, match="expected an nn.Module"):
        tmaf.convert("model")
    with pytest.raises(TypeError, match="nn.Module classes"):
        tmaf.convert(nn.Sequential(nn.ReLU()), activations=(nn.ReLU(),))
    with pytest.raises(ValueError, match="unknown activation"):
        tmaf.convert(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), "diag")


def test_param_groups():
    model = tmaf.convert(resnet_like(), "diagonal", example_input=torch.randn(1, 3, 8, 8))
    groups = tmaf.param_groups(model, weight_decay=5e-4, tmaf_lr=0.01)
    by_name = {g["name"]: g for g in groups}
    n_tmaf = sum(1 for _ in tmaf.tmaf_modules(model))
    assert len(by_name["tmaf"]["params"]) == n_tmaf and by_name["tmaf"]["weight_decay"] == 0.0
    assert by_name["tmaf"]["lr"] == 0.01 and by_name["weights"]["weight_decay"] == 5e-4
    total = sum(len(g["params"]) for g in groups)
    assert total == len(list(model.parameters()))
    torch.optim.SGD(groups, lr=0.1)  # accepted by a real optimiser
    lazy = tmaf.convert(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), "diagonal", channel_dim=-1)
    with pytest.raises(ValueError, match="uninitialised"):
        tmaf.param_groups(lazy)


def test_example_pass_has_no_side_effects():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                          nn.Flatten(), nn.LazyLinear(3), nn.GELU()).train()
    model(torch.randn(2, 3, 5, 5))
    model[3].eval()  # a mixed mode must come back as it was
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    example = (torch.randn(1, 3, 5, 5),)  # batch 1, a tuple of arguments
    rng = torch.get_rng_state()
    tmaf.convert(model, "diagonal", example_input=example)
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in state.items():  # BatchNorm running stats and num_batches_tracked unchanged
        assert torch.equal(model.state_dict()[k], v), k
    assert [(m.channel_dim, m.num_channels) for _, m in tmaf.tmaf_modules(model)] == [(1, 4), (-1, 3)]
    assert not any(p.grad is not None for p in model.parameters())


def test_nothing_converted_warns_and_strict_raises():
    with pytest.warns(UserWarning, match=r"no activation converted in Sequential.*Tanh"):
        tmaf.convert(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), "diagonal")
    with pytest.raises(ValueError, match="no activation converted in Sequential"):
        tmaf.convert(nn.Sequential(nn.Linear(2, 2)), "diagonal", strict=True)
    model = tmaf.convert(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), "diagonal", activations=("tanh",))
    assert isinstance(model[1], tmaf.DiagonalTMAF)


def test_init_match_needs_a_known_function():
    class Mine(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    model = nn.Sequential(nn.Linear(3, 4), Mine())
    with pytest.raises(ValueError, match=r"init='match'.*'1'.*not a recognised activation"):
        tmaf.convert(model, "diagonal", activations=(Mine,), init="match")
    tmaf.convert(model, "continuous_diagonal", activations=(Mine,), init="match", match="silu")
    assert model[1].match_error < 0.05
    with pytest.raises(ValueError, match=r"init='match' at '1' \(PReLU\).*unknown function"):
        tmaf.convert(nn.Sequential(nn.Linear(3, 4), nn.PReLU()), "diagonal", activations=("prelu",),
                     init="match")


def test_recognised_functions_and_non_default_settings():
    model = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 4), nn.GELU("tanh"),
                          nn.Linear(4, 4), nn.Sigmoid())
    tmaf.convert(model, "continuous_diagonal", init="match")
    assert [r["function"] for r in model.tmaf_conversion] == ["leaky_relu", "gelu_tanh"]
    assert isinstance(model[5], nn.Sigmoid)  # a gate: converted only when named
    y = torch.linspace(-2, 2, 41).reshape(-1, 1).expand(-1, 4)
    torch.testing.assert_close(model[1](y), nn.functional.leaky_relu(y, 0.2))  # its own slope


def test_conversion_spec_rebuilds_the_layout_on_a_fresh_model():
    import json

    model = tmaf.convert(resnet_like().eval(), "continuous_tridiagonal",
                         example_input=torch.randn(1, 3, 8, 8))
    with torch.no_grad():
        for _, m in tmaf.tmaf_modules(model):
            m.levels.add_(0.1 * torch.randn_like(m.levels))
    spec = json.loads(json.dumps(tmaf.conversion_spec(model)))  # plain JSON data
    fresh = tmaf.apply_conversion(resnet_like().eval(), spec)
    assert list(fresh.state_dict()) == list(model.state_dict())
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(fresh(x), model(x))
    assert isinstance(fresh[3].relu, tmaf.CallSites) and len(fresh[3].relu.sites) == 2
    with pytest.raises(ValueError, match="names '9.act'.*another architecture"):
        bad = {**spec, "sites": [{**spec["sites"][0], "names": ["9.act"]}]}
        tmaf.apply_conversion(resnet_like(), bad)
    with pytest.raises(ValueError, match="expected a conversion spec"):
        tmaf.apply_conversion(resnet_like(), {"sites": []})
