"""The core needs torch alone: importing and running ``tmaf`` imports nothing outside torch, the
standard library and tmaf (the figures, the CLI and the integrations are the lab's or lazy)."""

from __future__ import annotations

import subprocess
import sys

#: Packages the core must never import: the lab extra's and the integrations' (numpy and tqdm
#: included: torch imports them only when they are installed and runs without them).
FORBIDDEN = ("numpy", "tqdm", "matplotlib", "PIL", "scipy", "pandas", "transformers", "timm",
             "accelerate", "onnx", "onnxruntime", "tmaf_lab")

#: In a fresh interpreter, a meta-path finder answers every import of FORBIDDEN as a missing
#: package (as in an environment with torch alone) and records it; torch is imported first, then
#: the core's public modules, which also run a layer and a conversion.
CODE = f"""
import importlib.abc, sys
FORBIDDEN = {FORBIDDEN!r}
asked = []
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in FORBIDDEN:
            asked.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Missing())
import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torch warns once that it runs without numpy
    import torch
torch_asked, asked[:] = list(asked), []
import tmaf, tmaf.functional, tmaf.modules, tmaf.convert, tmaf.calibrate, tmaf.matching
from torch import nn
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
tmaf.convert(model, "tridiagonal", example_input=torch.randn(3, 4))
layer = tmaf.DiagonalTMAF(8, init="match", match="gelu")
layer(torch.randn(5, 8)).sum().backward()
model(torch.randn(3, 4)).sum().backward()
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(FORBIDDEN))
print("asked:", asked, "loaded:", loaded)
sys.exit(1 if asked or set(loaded) - {{n.split(".")[0] for n in torch_asked}} else 0)
"""


def test_core_needs_torch_alone():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "asked: [] loaded: []" in done.stdout, done.stdout
