"""Models: every activation call site gets its own module; TMAF-at-init equals the ReLU twin."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import tmaf
from tmaf_lab.models import MODEL_NAMES, create_model

SHAPES = {"mlp": (1, 28, 28), "cnn": (1, 28, 28), "fastnet": (3, 32, 32), "airbench": (3, 32, 32),
          "airbench-white": (3, 32, 32), "resnet18": (3, 32, 32),
          "gpt": (8,)}  # gpt: (context,), 10 = the vocabulary
SMALL = {"mlp": {"width": 32}, "cnn": {"width": 8}, "fastnet": {"width": 8},
         "airbench": {"width": 8}, "airbench-white": {"width": 8}, "resnet18": {"width": 8},
         "gpt": {"width": 8, "depth": 2, "heads": 2}}
CALL_SITES = {"mlp": 2, "cnn": 3, "fastnet": 4, "airbench": 7, "airbench-white": 7, "resnet18": 17,
              "gpt": 2}


def model_input(name: str) -> torch.Tensor:
    return torch.randint(0, 10, (3, *SHAPES[name])) if name == "gpt" else torch.randn(3, *SHAPES[name])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_module_per_call_site(name):
    made = []

    def factory(c):
        made.append(nn.PReLU(c))
        return made[-1]

    model = create_model(name, SHAPES[name], 10, factory, **SMALL[name])
    assert len(made) == CALL_SITES[name]
    found = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    assert len({id(m) for m in found}) == len(made) == len(found)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("act", ["diagonal", "tridiagonal"])
def test_tmaf_model_at_init_equals_relu_twin(name, act):
    x = model_input(name)
    torch.manual_seed(0)
    relu = create_model(name, SHAPES[name], 10, "relu", **SMALL[name]).eval()
    torch.manual_seed(0)
    tm = create_model(name, SHAPES[name], 10, act, **SMALL[name]).eval()
    assert len(list(tmaf.tmaf_modules(tm))) == CALL_SITES[name]
    tm.load_state_dict(relu.state_dict(), strict=False)  # same weights, TMAF levels untouched
    torch.testing.assert_close(tm(x), relu(x), atol=1e-5, rtol=1e-5)
    out = tm(x)
    out.sum().backward()
    for _, m in tmaf.tmaf_modules(tm):
        assert m.levels.grad is not None


def test_unknown_model_and_activation_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'vgg'.*mlp"):
        create_model("vgg", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="relu"):
        create_model("mlp", (1, 28, 28), 10, "swishy")


def test_airbench_full_size_parameter_count():
    model = create_model("airbench", (3, 32, 32), 10, "relu")
    assert sum(p.numel() for p in model.parameters()) == 1_972_816  # airbench94 widths 24/64/256/256


def test_resnet18_full_size_parameter_count():
    model = create_model("resnet18", (3, 32, 32), 10, "relu")
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # the usual CIFAR ResNet-18
