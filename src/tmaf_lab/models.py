"""Image classifiers that take their activation as a factory (one module per call site).

Every model takes ``act``: an activation name understood by :func:`tmaf.get_act_layer`
("relu", "prelu", "gelu", "diagonal", "tridiagonal", "banded2", "full", "continuous_diagonal",
...), ``pwl`` (the studies' name for ``continuous_diagonal``, the continuous twin of diagonal
TMAF from the core), a transformer baseline of :mod:`tmaf_lab.baselines` (relu2, leaky_relu2,
xielu; swiglu for the gpt only), ``FORM@FUNCTION`` (a TMAF form started from FUNCTION by
``init="match"``), or a callable ``act(num_channels) -> nn.Module``. The factory is called
once at every place an activation is applied, so no two call sites share parameters
(docs/method.md section 5).
Activations see (N, C) features in MLPs and (N, C, H, W) maps in CNNs: channel axis 1.

- ``mlp``: 784-512-512-10 multilayer perceptron (MNIST, Fashion-MNIST).
- ``cnn``: two conv blocks + one hidden dense layer (MNIST, Fashion-MNIST).
- ``fastnet``: a small 4-conv CIFAR net for CPU budgets (after airbench's layout).
- ``airbench``: airbench94's layout (Jordan 2024) for fast GPU runs on CIFAR-10.
- ``airbench-white``: the same groups behind a frozen whitening stem (a 2x2 conv whose 24
  filters are the data's patch-whitening directions, set by :func:`init_whitening` from
  training images), with airbench's BatchNorm settings (momentum 0.4, no trained scale),
  identity-initialised convolutions and logits scaled by 1/9: the ``cpu-cifar`` recipe's model.
- ``resnet18``: the CIFAR-style ResNet-18 (3x3 stem, no max-pool; He et al. 2016).
- ``gpt``: a small causal character-level transformer (:mod:`tmaf_lab.gpt`); its ``in_shape``
  is (context,) and ``num_classes`` the vocabulary size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn

ActFactory = Callable[[int], nn.Module]
#: ``FORM@FUNCTION`` (e.g. ``continuous_tridiagonal_knots@relu2``): the TMAF form started
#: from FUNCTION by the function-matching start (init="match", match=FUNCTION)
MATCH_MARK = "@"
#: which weights get weight decay: every non-activation parameter, or those of >= 2 dimensions
DECAY_ON = ("all", "matrices")
MODEL_NAMES = ("mlp", "cnn", "fastnet", "airbench", "airbench-white", "resnet18", "gpt")
#: the studies' names for core activations: ``pwl`` (the continuous per-channel rival of diagonal
#: TMAF, same grid and parameters) is the core's continuous_diagonal; ``pwl_knots`` is the same
#: function trained through its values at the breakpoints (DeepSplines' parameterisation);
#: ``continuous_tridiagonal_knots`` the continuous tridiagonal form trained the same way
LAB_ACTIVATIONS = {"pwl": "continuous_diagonal", "pwl_knots": "continuous_diagonal",
                   "continuous_tridiagonal_knots": "continuous_tridiagonal"}
LAB_OPTIONS = {"pwl_knots": {"parameterization": "knot_values"},
               "continuous_tridiagonal_knots": {"parameterization": "knot_values"}}


def act_factory(act: str | ActFactory, **kwargs) -> ActFactory:
    """Turn an activation name (``pwl``, a peer library's activation of
    :mod:`tmaf_lab.peer_activations`, or any ``tmaf.get_act_layer`` name) or a callable into a factory; an
    unknown name, or a peer whose package is not installed, is a ValueError that says so."""
    if callable(act):
        return act
    import tmaf
    from tmaf_lab import peer_activations as peers
    from tmaf_lab.baselines import BASELINES, GATED

    if isinstance(act, str):
        key = act.strip().lower()
        if MATCH_MARK in key:
            key, kwargs = _matched(key, kwargs)
            act = key
        if key in GATED:
            raise ValueError(f"activation {key!r} is a gated MLP's (input 2h channels, output h): "
                             "only --model gpt takes it")
        if key in BASELINES:
            if kwargs:
                raise ValueError(f"activation {key!r} takes no options, got {', '.join(kwargs)}")
            return BASELINES[key]
        for name, value in LAB_OPTIONS.get(key, {}).items():
            if kwargs.get(name, value) != value:
                raise ValueError(f"activation {key!r} is {name}={value!r}; got {kwargs[name]!r}")
            kwargs = {**kwargs, name: value}
        act = LAB_ACTIVATIONS.get(key, act)
        if peers.is_peer_name(act):
            if kwargs:
                raise ValueError(f"activation {act!r} (a peer library's) takes no options, got "
                                 f"{', '.join(kwargs)}")
            try:
                peers.build_peer(act, 1)  # the package imports here, or a clear error now
            except peers.PeerMissing as e:
                raise ValueError(f"activation {act!r} needs its library: {e}") from None
            return functools.partial(peers.build_peer, act)

    try:
        return tmaf.get_act_layer(act, **kwargs)
    except ValueError as e:
        raise ValueError(f"{e}; the lab also knows {', '.join(LAB_ACTIVATIONS)} and the peer "
                         f"libraries' {', '.join(peers.DISTRIBUTIONS)}") from None


def _matched(key: str, kwargs: dict) -> tuple[str, dict]:
    """``FORM@FUNCTION`` -> (FORM, kwargs with init="match", match=FUNCTION)."""
    import tmaf

    form, _, function = key.partition(MATCH_MARK)
    if not is_learned_name(form) or not function:
        raise ValueError(f"activation {key!r}: FORM@FUNCTION needs a TMAF form (or pwl, "
                         f"pwl_knots, continuous_tridiagonal_knots) and a function, e.g. "
                         f"continuous_tridiagonal_knots@relu2")
    if "match" not in tmaf.INITS:
        raise ValueError(f"activation {key!r} needs the function-matching start "
                         f"(init='match'), which this tmaf does not have")
    if kwargs.get("init", "match") != "match" or kwargs.get("match", function) != function:
        raise ValueError(f"activation {key!r} is init='match', match={function!r}; got "
                         f"init={kwargs.get('init')!r}, match={kwargs.get('match')!r}")
    return form, {**kwargs, "init": "match", "match": function}


def is_learned_name(name: str) -> bool:
    """A TMAF name of either form, one of the lab's names for them (``pwl``, ``pwl_knots``,
    ``continuous_tridiagonal_knots``), or such a name with a matching start (``FORM@FUNCTION``)."""
    from tmaf.factory import is_tmaf_name

    name = name.partition(MATCH_MARK)[0]
    return is_tmaf_name(LAB_ACTIVATIONS.get(name, name))


def activation_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Parameters of learned activations: TMAF levels (either form, pwl included), PReLU slopes,
    xIELU's two scalars, the peer libraries' activations."""
    import tmaf
    from tmaf_lab.baselines import XIELU
    from tmaf_lab.peer_activations import PeerActivation

    seen = set()
    for m in model.modules():
        if isinstance(m, (tmaf.BandedTMAF, nn.PReLU, PeerActivation, XIELU)):
            for p in m.parameters(recurse=isinstance(m, PeerActivation)):
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p


def optimizer_groups(model: nn.Module, weight_decay: float = 0.0, act_weight_decay: float = 0.0,
                 act_lr: float | None = None, decay_on: str = "all") -> list[dict]:
    """Optimiser groups: weights (``weight_decay``), then every learned-activation parameter
    (TMAF, PReLU, pwl, xIELU and the peer libraries' alike) with ``act_weight_decay`` and, if
    given, ``act_lr``. Treating them the same keeps the comparison fair (decay would pull pwl
    slopes to 0). ``decay_on="matrices"`` decays only the weights of two or more dimensions
    (linear and convolution weights, embeddings, as nanoGPT does); the others (norm gains,
    biases) go to a group "no decay" without weight decay; ``"all"`` decays every weight."""
    if decay_on not in DECAY_ON:
        raise ValueError(f"decay_on must be one of {', '.join(DECAY_ON)}, got {decay_on!r}")
    acts = {id(p) for p in activation_parameters(model)}
    params = [p for p in model.parameters() if p.requires_grad]
    weights = [p for p in params if id(p) not in acts]
    if decay_on == "matrices":
        groups = [{"params": [p for p in weights if p.dim() >= 2], "weight_decay": weight_decay,
                   "name": "weights"},
                  {"params": [p for p in weights if p.dim() < 2], "weight_decay": 0.0,
                   "name": "no decay"}]
    else:
        groups = [{"params": weights, "weight_decay": weight_decay, "name": "weights"}]
    act = [p for p in params if id(p) in acts]
    if act:
        groups.append({"params": act, "weight_decay": act_weight_decay, "name": "activation",
                       **({"lr": act_lr} if act_lr is not None else {})})
    return [g for g in groups if g["params"]]


def mlp(in_shape: tuple[int, int, int], num_classes: int, act: str | ActFactory = "relu",
        width: int = 512, depth: int = 2) -> nn.Sequential:
    make = act_factory(act)
    n_in = in_shape[0] * in_shape[1] * in_shape[2]
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else width, width), make(width)]
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _conv_bn(c_in: int, c_out: int, make: ActFactory, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), make(c_out)]


def cnn(in_shape: tuple[int, int, int], num_classes: int, act: str | ActFactory = "relu",
        width: int = 32) -> nn.Sequential:
    make = act_factory(act)
    c, h, w = in_shape
    return nn.Sequential(
        *_conv_bn(c, width, make), nn.MaxPool2d(2),
        *_conv_bn(width, 2 * width, make), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), 128), make(128),
        nn.Linear(128, num_classes))


def fastnet(in_shape: tuple[int, int, int], num_classes: int, act: str | ActFactory = "relu",
            width: int = 32) -> nn.Sequential:
    make = act_factory(act)
    widths = (width, 2 * width, 4 * width)
    layers = _conv_bn(in_shape[0], width, make)
    c = width
    for w in widths:  # each stage halves the resolution: 32 -> 16 -> 8 -> 4
        layers += [*_conv_bn(c, w, make), nn.MaxPool2d(2)]
        c = w
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                         nn.Linear(c, num_classes))


def airbench(in_shape: tuple[int, int, int], num_classes: int, act: str | ActFactory = "relu",
             width: int = 64) -> nn.Sequential:
    """airbench94's layout: a 2x2 stem conv, then three groups conv-pool-BN-act-conv-BN-act at
    width, 4*width, 4*width channels, global max-pool, linear head (1.97 M parameters at
    width 64). Departures: BN after the stem (so every activation sees normalised input,
    inside the TMAF grid) instead of a frozen whitening stem; plain BN; no output scaling."""
    make = act_factory(act)
    stem = max(1, width * 3 // 8)  # 24 at width 64

    def group(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.MaxPool2d(2),
                nn.BatchNorm2d(c_out), make(c_out), *_conv_bn(c_out, c_out, make)]

    return nn.Sequential(
        nn.Conv2d(in_shape[0], stem, 2, bias=False), nn.BatchNorm2d(stem), make(stem),
        *group(stem, width), *group(width, 4 * width), *group(4 * width, 4 * width),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes, bias=False))


WHITEN_BN = {"momentum": 0.4, "eps": 1e-12}  # airbench94's (PyTorch's momentum convention)


class WhiteningStem(nn.Conv2d):
    """A 2x2 convolution (no padding) whose weights are the patch-whitening filters of the
    training images, frozen (:func:`init_whitening`); its bias trains in the first epochs only
    (the trainer's ``whiten_bias_epochs``)."""

    def __init__(self, c_in: int):
        super().__init__(c_in, 2 * 4 * c_in, 2, bias=True)
        self.weight.requires_grad_(False)
        nn.init.zeros_(self.bias)


def init_whitening(model: nn.Module, images, eps: float = 5e-4) -> None:
    """Set every :class:`WhiteningStem` of ``model`` from ``images`` (N, C, H, W), normalised as
    the model will see them: the eigenvectors V and eigenvalues L of the covariance of all 2x2
    patches give the filters V^T / sqrt(L + eps) and their negatives (so a ReLU-like activation
    after it keeps both signs). Deterministic given the images."""
    stems = [m for m in model.modules() if isinstance(m, WhiteningStem)]
    if not stems:
        raise ValueError(f"init_whitening: {type(model).__name__} has no whitening stem")
    with torch.no_grad():
        x = images.double()
        patches = torch.nn.functional.unfold(x, 2).transpose(1, 2).reshape(-1, 4 * x.shape[1])
        patches = patches - patches.mean(0)
        cov = patches.T @ patches / patches.shape[0]
        evals, evecs = torch.linalg.eigh(cov)
        filters = (evecs.T / (evals.clamp_min(0) + eps).sqrt()[:, None])
        filters = filters.reshape(-1, x.shape[1], 2, 2)
        for stem in stems:
            stem.weight.copy_(torch.cat([filters, -filters]).to(stem.weight.dtype))


class Scale(nn.Module):
    """Multiply by a fixed factor (airbench's 1/9 on the logits)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


LOGIT_SCALE = 1 / 9  # airbench94's output scaling


def _dirac_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """A bias-free 3x3 convolution whose first min(c_in, c_out) filters start as the identity
    (a Dirac kernel; the other filters keep PyTorch's default initialisation)."""
    conv = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:min(c_in, c_out)])
    return conv


def airbench_white(in_shape: tuple[int, int, int], num_classes: int,
                   act: str | ActFactory = "relu", width: int = 64) -> nn.Sequential:
    """airbench94's groups at ``width``, ``4 width``, ``4 width`` behind a frozen whitening stem
    (24 channels for RGB) and its activation; every BatchNorm has momentum 0.4, eps 1e-12 and
    a frozen unit scale (its shift trains); every 3x3 convolution starts with identity filters
    for its first input channels (:func:`_dirac_conv`); the logits are scaled by 1/9. Call
    :func:`init_whitening` before training."""
    make = act_factory(act)
    stem = WhiteningStem(in_shape[0])

    def bn(c: int) -> nn.BatchNorm2d:
        layer = nn.BatchNorm2d(c, **WHITEN_BN)
        layer.weight.requires_grad_(False)
        return layer

    def group(c_in: int, c_out: int) -> list[nn.Module]:
        return [_dirac_conv(c_in, c_out), nn.MaxPool2d(2), bn(c_out), make(c_out),
                _dirac_conv(c_out, c_out), bn(c_out), make(c_out)]

    c0 = stem.out_channels
    return nn.Sequential(stem, make(c0), *group(c0, width), *group(width, 4 * width),
                         *group(4 * width, 4 * width), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                         nn.Linear(4 * width, num_classes, bias=False), Scale(LOGIT_SCALE))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, make: ActFactory):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = make(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))
        self.act2 = make(c_out)

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3x3 stem, stages of 2 blocks at 64/128/256/512 channels."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int,
                 act: str | ActFactory = "relu", width: int = 64):
        super().__init__()
        make = act_factory(act)
        self.stem = nn.Sequential(*_conv_bn(in_shape[0], width, make))
        blocks, c = [], width
        for i, w in enumerate((width, 2 * width, 4 * width, 8 * width)):
            for j in range(2):
                blocks.append(BasicBlock(c, w, 2 if (i > 0 and j == 0) else 1, make))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def resnet18(in_shape: tuple[int, int, int], num_classes: int,
             act: str | ActFactory = "relu", width: int = 64) -> ResNet18:
    return ResNet18(in_shape, num_classes, act, width)


def token_act_factory(act: str | ActFactory):
    """For the GPT's (B, T, C) activations: (channels) -> (module, needs (B*T, C) input).
    Activations that take ``channel_dim`` get -1; the transformer baselines
    (:mod:`tmaf_lab.baselines`, swiglu included) take (B, T, C) as it is; the others see rows
    of channels."""
    from tmaf_lab.baselines import BASELINES

    def make(channels: int) -> tuple[nn.Module, bool]:
        if isinstance(act, str) and act.strip().lower() in BASELINES:
            return BASELINES[act.strip().lower()](channels), False
        try:
            return act_factory(act, channel_dim=-1)(channels), False
        except (TypeError, ValueError):
            return act_factory(act)(channels), True

    return make


def _gpt(in_shape: tuple[int, ...], num_classes: int, act: str | ActFactory = "gelu",
         **kwargs) -> nn.Module:
    from .baselines import GATED
    from .gpt import gpt

    gated = isinstance(act, str) and act.strip().lower() in GATED
    return gpt(in_shape, num_classes, token_act_factory(act), gated=gated, **kwargs)


_BUILDERS = {"mlp": mlp, "cnn": cnn, "fastnet": fastnet, "airbench": airbench,
             "airbench-white": airbench_white, "resnet18": resnet18, "gpt": _gpt}


def create_model(name: str, in_shape: tuple[int, int, int], num_classes: int,
                 act: str | ActFactory = "relu", **kwargs) -> nn.Module:
    """Build model ``name`` for inputs of shape (C, H, W); unknown names -> ValueError."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    return _BUILDERS[name](in_shape, num_classes, act, **kwargs)
