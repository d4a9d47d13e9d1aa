"""The timm path, against stand-ins that reproduce timm 1.0's calling conventions.

timm cannot be installed beside the CPU torch of our set-up (it requires torchvision, whose
wheels pin a different torch), so these stand-ins copy, from timm 1.0 source, exactly what
decides how an activation is built and called: ``create_act_layer`` (``layers/create_act.py``,
with its ``inplace`` retry), ``Mlp`` (``fc1 -> act_layer() -> fc2``), ConvNeXt's block in both
layouts (NHWC Linear MLP, or NCHW 1x1-conv MLP), ResNet's ``BasicBlock``
(``act_layer(inplace=True)``, second activation after an in-place residual add), EfficientNet's
``BatchNormAct2d`` (the activation inside a BatchNorm2d subclass, after ``F.batch_norm``), timm's
own activation classes (module ``timm.layers.activations``), and the optimiser factory's
weight-decay grouping (``optim/_param_groups.py``, ``create_optimizer_v2``'s
``model.no_weight_decay()``).
"""

from __future__ import annotations

import fnmatch
import gc
import io

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import tmaf
from tmaf.integrations import timm as tt


# --- timm 1.0 stand-ins ----------------------------------------------------------------------
def create_act_layer(act_layer, inplace=None, **kwargs):  # timm/layers/create_act.py
    if inplace is None:
        return act_layer(**kwargs)
    try:
        return act_layer(inplace=inplace, **kwargs)
    except TypeError:
        return act_layer(**kwargs)


class Mlp(nn.Module):  # timm/layers/mlp.py
    def __init__(self, dim, hidden, act_layer=nn.GELU, use_conv=False):
        super().__init__()
        layer = nn.Conv2d if use_conv else nn.Linear
        self.fc1, self.act, self.drop1 = layer(dim, hidden, 1) if use_conv else layer(dim, hidden), \
            act_layer(), nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.fc2 = layer(hidden, dim, 1) if use_conv else layer(hidden, dim)

    def forward(self, x):
        return self.fc2(self.norm(self.drop1(self.act(self.fc1(x)))))


class ConvNeXtBlock(nn.Module):  # timm/models/convnext.py: conv_mlp=False permutes to NHWC
    def __init__(self, dim, act_layer, conv_mlp=False):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim) if not conv_mlp else nn.GroupNorm(1, dim)
        self.mlp = Mlp(dim, 4 * dim, act_layer, use_conv=conv_mlp)
        self.conv_mlp = conv_mlp

    def forward(self, x):
        shortcut = x
        x = self.conv_dw(x)
        if self.conv_mlp:
            x = self.mlp(self.norm(x))
        else:
            x = self.mlp(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return x + shortcut


class BasicBlock(nn.Module):  # timm/models/resnet.py
    def __init__(self, c, act_layer):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.act1 = act_layer(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.act2 = act_layer(inplace=True)

    def forward(self, x):
        shortcut = x
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        x += shortcut
        return self.act2(x)


class BatchNormAct2d(nn.BatchNorm2d):  # timm/layers/norm_act.py
    def __init__(self, c, act_layer, inplace=True):
        super().__init__(c)
        self.drop = nn.Identity()
        self.act = create_act_layer(act_layer, inplace=inplace)

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, self.momentum, self.eps)
        return self.act(self.drop(x))


class ViTish(nn.Module):  # patch embed (conv) -> tokens (B, T, C) -> Mlp; pos_embed not decayed
    def __init__(self, act_layer):
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 16))
        self.mlp = Mlp(16, 64, act_layer)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2) + self.pos_embed
        return self.mlp(t)

    def no_weight_decay(self):
        return {"pos_embed"}


def param_groups_weight_decay(model, weight_decay, no_weight_decay_list=()):  # timm/optim
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim <= 1 or name.endswith(".bias") or any(fnmatch.fnmatch(name, pat)
                                                         for pat in no_weight_decay_list):
            no_decay.append(name)
        else:
            decay.append(name)
    return decay, no_decay


class GELU(nn.Module):  # timm/layers/activations.py (a plain nn.Module, not nn.GELU)
    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, x):
        return F.gelu(x)


GELU.__module__ = "timm.layers.activations"


# --- tests -------------------------------------------------------------------------------------
def _stem_bn_act(act_layer):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), BatchNormAct2d(8, act_layer),
                         BasicBlock(8, act_layer))


@pytest.mark.parametrize("build, x, expected", [
    (lambda a: ConvNeXtBlock(8, a), torch.randn(1, 8, 5, 5), [(-1, 32)]),       # NHWC Linear MLP
    (lambda a: ConvNeXtBlock(8, a, conv_mlp=True), torch.randn(1, 8, 5, 5), [(1, 32)]),
    (lambda a: ViTish(a), torch.randn(1, 3, 8, 8), [(-1, 64)]),                  # tokens (B, T, C)
    (_stem_bn_act, torch.randn(1, 3, 6, 6), [(1, 8), (1, 8), (1, 8)]),         # NCHW, inplace=
])
def test_act_layer_lands_on_the_layouts_channel_axis(build, x, expected):
    model = build(tt.act_layer("diagonal")).eval()
    assert [m.num_channels for _, m in tmaf.tmaf_modules(model)] == [1] * len(expected)  # lazy
    y = model(x)
    got = [(m.channel_dim, m.num_channels) for _, m in tmaf.tmaf_modules(model)]
    assert got == expected
    ref = build(nn.ReLU).eval()
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if "levels" not in k
                         and "breakpoints" not in k})
    torch.testing.assert_close(y, ref(x))  # ReLU start: the same function as act_layer=nn.ReLU
    assert not tt._Watch.pending and not tt._Watch.handles  # global hooks removed once resolved


def test_act_layer_square_nhwc_is_not_confused():
    # 8 channels and an 8x8 image: shape alone cannot tell NHWC from NCHW, the producer can
    model = ConvNeXtBlock(8, tt.act_layer("tridiagonal")).eval()
    model(torch.randn(1, 8, 8, 8))
    (_, act), = tmaf.tmaf_modules(model)
    assert (act.channel_dim, act.num_channels, act.bandwidth) == (-1, 32, 1)


def test_act_layer_calling_conventions_and_errors():
    layer = tt.act_layer("diagonal", form="continuous")
    for m in (layer(), layer(inplace=True), layer(inplace=False), create_act_layer(layer, inplace=True)):
        assert isinstance(m, tmaf.LazyDiagonalTMAF) and m.form == "continuous"
    del m
    gc.collect()  # unresolved TMAFs that are gone release the global hook at the next forward
    assert not tt._Watch.pending
    nn.Identity()(torch.ones(1))
    assert not tt._Watch.handles
    with pytest.raises(TypeError, match="takes only inplace"):
        layer(16)
    with pytest.raises(ValueError, match="needs a TMAF name"):
        tt.act_layer("gelu")
    fixed = tt.act_layer("diagonal", channel_dim=1)()
    fixed(torch.randn(2, 5, 3))
    assert (fixed.channel_dim, fixed.num_channels) == (1, 5)
    orphan = layer()  # first op on a 3-D input: no producing layer to read
    with pytest.raises(ValueError, match=r"cannot infer the channel axis.*\(2, 5, 3\)"):
        orphan(torch.randn(2, 5, 3))
    assert not tt._Watch.pending


def test_plain_layer_factories_refuse_timms_calls():
    factory = tmaf.get_act_layer("diagonal")
    assert factory(5).num_channels == 5
    for call in (lambda: factory(), lambda: factory(inplace=True), lambda: factory(5, inplace=True)):
        with pytest.raises(TypeError, match=r"factory\(num_channels\).*integrations.timm.act_layer"):
            call()


def test_no_weight_decay_for_timms_optimiser_factory():
    model = ViTish(tt.act_layer("diagonal"))
    with pytest.raises(ValueError, match="run one forward pass"):
        tt.no_weight_decay(model)
    model(torch.randn(1, 3, 8, 8))
    tt.exclude_from_weight_decay(model)
    no_wd = getattr(model, "no_weight_decay", lambda: set())()  # what create_optimizer_v2 reads
    assert no_wd == {"pos_embed", "mlp.act.levels"}
    decay, no_decay = param_groups_weight_decay(model, 0.05, no_wd)
    assert "mlp.act.levels" in no_decay and "pos_embed" in no_decay
    assert decay == ["patch.weight", "mlp.fc1.weight", "mlp.fc2.weight"]
    buf = io.BytesIO()  # the names survive torch.save of the whole model (no lambda attribute)
    torch.save(model, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=False).no_weight_decay() == {"pos_embed", "mlp.act.levels"}


def test_convert_recognises_timm_activation_classes():
    model = nn.Sequential(nn.Conv2d(3, 6, 1), GELU(), nn.Flatten(2), nn.Linear(16, 5), GELU())
    tmaf.convert(model, "diagonal", example_input=torch.randn(1, 3, 4, 4))
    got = [(n, m.channel_dim, m.num_channels) for n, m in tmaf.tmaf_modules(model)]
    assert got == [("1", 1, 6), ("4", -1, 5)]
    assert [r["function"] for r in model.tmaf_conversion] == ["gelu", "gelu"]
