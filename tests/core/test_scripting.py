"""TorchScript is not a supported route: scripting a model with a TMAF fails with a clear error
that names the supported ones (torch.compile, torch.export)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tmaf

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.mark.parametrize("make", [
    lambda: tmaf.DiagonalTMAF(4),
    lambda: tmaf.TridiagonalTMAF(4),
    lambda: tmaf.BandedTMAF(4, 2),
    lambda: nn.Sequential(nn.Linear(3, 4), tmaf.DiagonalTMAF(4), nn.Linear(4, 1)),
])
def test_jit_script_names_the_supported_routes(make):
    with pytest.raises(RuntimeError, match=r"torch\.jit\.script.*torch\.compile.*torch\.export"):
        torch.jit.script(make())


def test_jit_script_of_a_converted_model_is_refused_too():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU())
    tmaf.convert(model, "tridiagonal", example_input=torch.randn(2, 3))
    with pytest.raises(RuntimeError, match="TorchScript is not supported"):
        torch.jit.script(model)


def test_models_without_tmaf_still_script():
    torch.jit.script(nn.Sequential(nn.Linear(3, 4), nn.ReLU()))
