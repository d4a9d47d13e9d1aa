"""Check tmaf's timm path against real timm models: act_layer=, tmaf.convert, create_optimizer_v2.

    python scripts/check_timm.py [--stub-torchvision] > results/integrations/timm-check.txt

For each of resnet18, vit_tiny_patch16_224 (tokens (B, T, C)), convnext_atto (its default
conv_mlp=True: NCHW 1x1-conv MLP), convnext_atto with conv_mlp=False (NHWC Linear MLP) and
efficientnet_b0 (BatchNormAct2d, squeeze-excite):
  1. ``timm.create_model(name, act_layer=tmaf.integrations.timm.act_layer("diagonal"))``, one
     forward pass: every TMAF's channel axis and C must be the channel axis of its input in that
     model's layout, and the output must equal the same model built with ``act_layer=nn.ReLU``
     (the ReLU start) given the same weights;
  2. ``tmaf.convert(timm.create_model(name), "diagonal", example_input=...)``: every activation
     module of the model's own kind is converted, and the output is unchanged for ReLU models;
  3. ``timm.optim.create_optimizer_v2(model, "adamw", weight_decay=0.05)`` after
     ``exclude_from_weight_decay``: every TMAF parameter is in a group with weight_decay 0.

timm imports torchvision (for its data transforms). Where torchvision cannot be imported beside
the installed torch (PyPI's torchvision 0.28.0 beside torch 2.13.0+cpu raises "operator
torchvision::nms does not exist"), ``--stub-torchvision`` puts a placeholder torchvision on the
import path; model construction, forward and the optimiser factory do not use it. Exits 1 if a
check fails.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import sys
import types


def _stub_torchvision() -> None:
    class Dummy:
        def __init__(self, *a, **k):
            pass

        def __call__(self, *a, **k):
            return Dummy()

        def __getattr__(self, name):
            return Dummy()

        def __mro_entries__(self, bases):
            return (object,)

        def __iter__(self):
            return iter(())

    class Module(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return Dummy()

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path, target=None):
            if fullname.split(".")[0] == "torchvision":
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            m = Module(spec.name)
            m.__path__ = []
            m.__version__ = "stub"
            return m

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Finder())


MODELS = [  # name, create_model kwargs, input size, the model's own activation class name
    ("resnet18", {}, 64, "ReLU"),
    ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8}, 32, "GELU"),
    ("convnext_atto", {}, 64, "GELU"),  # conv_mlp=True by default for atto: NCHW 1x1-conv MLP
    ("convnext_atto", {"conv_mlp": False}, 64, "GELU"),  # NHWC Linear MLP
    ("efficientnet_b0", {}, 64, "SiLU"),
]


def _input_axis_ok(model, x):
    """Per TMAF: (name, channel_dim, C, the size of its input along channel_dim) from a pass."""
    import tmaf

    seen, handles = {}, []

    def hook(name):
        def record(module, args):
            seen.setdefault(name, tuple(args[0].shape))  # returns None: the input is left alone
        return record

    for name, m in tmaf.tmaf_modules(model):
        handles.append(m.register_forward_pre_hook(hook(name)))
    model(x)
    for h in handles:
        h.remove()
    return [(n, m.channel_dim, m.num_channels, seen[n]) for n, m in tmaf.tmaf_modules(model)]


def check(name, kwargs, size, own) -> list[str]:
    import timm
    import timm.optim
    import torch
    from torch import nn

    import tmaf
    from tmaf.integrations import timm as tt

    fails = []
    x = torch.randn(2, 3, size, size)
    torch.manual_seed(0)
    model = timm.create_model(name, act_layer=tt.act_layer("diagonal"), **kwargs).eval()
    with torch.no_grad():
        y = model(x)
        rows = _input_axis_ok(model, x)
    axes = sorted({(cd, len(s)) for _, cd, _, s in rows})
    bad = [r for r in rows if r[3][r[1]] != r[2]]
    relu = timm.create_model(name, act_layer=nn.ReLU, **kwargs).eval()
    relu.load_state_dict({k: v for k, v in model.state_dict().items()
                          if not k.endswith((".levels", ".breakpoints"))})
    with torch.no_grad():
        same = torch.allclose(relu(x), y, atol=1e-5, rtol=1e-5)
    tag = name + ("(conv_mlp=False)" if kwargs.get("conv_mlp") is False else "")
    print(f"{tag}: act_layer: {len(rows)} TMAFs, (channel_dim, input ndim) {axes}, "
          f"C matches the input at channel_dim: {not bad}, output == act_layer=nn.ReLU: {same}")
    if bad or not same or not rows:
        fails.append(f"{tag} act_layer")
    tt.exclude_from_weight_decay(model)
    opt = timm.optim.create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    levels = {id(m.levels) for _, m in tmaf.tmaf_modules(model)}
    decayed = sum(len(levels & {id(p) for p in g["params"]}) for g in opt.param_groups
                  if g["weight_decay"] != 0)
    print(f"{tag}: create_optimizer_v2(weight_decay=0.05): TMAF tensors decayed: {decayed} of "
          f"{len(levels)}")
    if decayed:
        fails.append(f"{tag} weight decay")
    plain = timm.create_model(name, **kwargs).eval()
    n_own = sum(type(m).__name__ == own for m in plain.modules())
    with torch.no_grad():
        before = plain(x)
        tmaf.convert(plain, "diagonal", example_input=x[:1])
        after = plain(x)
    n_conv = len(list(tmaf.tmaf_modules(plain)))
    rows = _input_axis_ok(plain, x)
    bad = [r for r in rows if r[3][r[1]] != r[2]]
    unchanged = torch.allclose(before, after, atol=1e-5, rtol=1e-5) if own == "ReLU" else None
    print(f"{tag}: convert: {n_conv} TMAFs for {n_own} {own} modules, C matches the input at "
          f"channel_dim: {not bad}" + (f", output unchanged: {unchanged}" if own == "ReLU" else ""))
    if bad or n_conv < n_own or unchanged is False:
        fails.append(f"{tag} convert")
    return fails


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stub-torchvision", action="store_true",
                        help="import timm beside a placeholder torchvision (see the docstring)")
    args = parser.parse_args(argv)
    if args.stub_torchvision:
        _stub_torchvision()
    import timm
    import torch

    import tmaf

    print(f"timm {timm.__version__}, torch {torch.__version__}, tmaf {tmaf.__version__}"
          + (", torchvision stubbed" if args.stub_torchvision else ""))
    fails = [f for spec in MODELS for f in check(*spec)]
    print("FAILED: " + ", ".join(fails) if fails else "all checks passed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
