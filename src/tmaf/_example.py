"""convert's look at the model: one example forward pass, with no side effects, or the module graph.

The example pass runs the model once in eval mode under ``torch.no_grad()`` and records, for every
call of every activation to convert, the input's shape and the channel axis of the layer that
produced it (see :mod:`tmaf._axis`). Afterwards everything is as before: each module's train/eval
flag, every buffer (BatchNorm running statistics, counters), the RNG state. Inputs: a tensor, a
tuple/list of positional arguments, or a mapping of keyword arguments (a Hugging Face batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._axis import producer_axis, producer_size

__all__ = ["Call", "run_example", "sequential_call", "hf_dummy_input"]


@dataclass
class Call:
    """One call of an activation module seen by the example pass (or read from the graph)."""

    shape: tuple[int, ...] | None  # input shape; None when read from the module graph
    axis: int | None               # channel axis inferred from the producer; None if unknown
    size: int | None               # C along ``axis``
    via: str                       # where the axis came from, for the report and errors


def _describe(name: str, module: nn.Module) -> str:
    return f"{name or '<root>'} ({type(module).__name__})"


class _Recorder:
    def __init__(self, model: nn.Module, targets: dict[int, str]) -> None:
        self.model, self.targets = model, targets
        self.outputs: dict[int, tuple[Tensor, str, nn.Module]] = {}  # tensors kept: ids stay unique
        self.order: list[tuple[str, nn.Module, Tensor]] = []
        self.calls: dict[int, list[Call]] = {i: [] for i in targets}

    def output_hook(self, name: str):
        def hook(module, args, out):
            if isinstance(out, Tensor) and not (args and out is args[0]):  # skip pass-throughs
                self.outputs[id(out)] = (out, name, module)
                self.order.append((name, module, out))
        return hook

    def input_hook(self, module, args, kwargs):
        x = args[0] if args else next(iter(kwargs.values()), None)
        if not isinstance(x, Tensor):
            raise TypeError(f"tmaf.convert: the activation at {self.targets[id(module)]!r} was called "
                            f"with {type(x).__name__}, expected a tensor")
        self.calls[id(module)].append(self._infer(module, x))

    def _infer(self, module: nn.Module, x: Tensor) -> Call:
        shape = tuple(x.shape)
        hit = self.outputs.get(id(x))
        if hit is not None and hit[0] is x:
            axis = producer_axis(hit[2], shape)
            if axis is not None:
                return Call(shape, axis, shape[axis], "after " + _describe(hit[1], hit[2]))
        parent_name = self.targets[id(module)].rpartition(".")[0]
        parent = self.model.get_submodule(parent_name)
        axis = producer_axis(parent, shape) if parent is not self.model else None
        if axis is not None:
            return Call(shape, axis, shape[axis], "inside " + _describe(parent_name, parent))
        for name, m, out in reversed(self.order):
            if tuple(out.shape) == shape and m is not module:
                axis = producer_axis(m, shape)
                if axis is not None:
                    return Call(shape, axis, shape[axis], f"after {_describe(name, m)}, same shape")
        if x.dim() <= 2:
            return Call(shape, -1, shape[-1], f"{x.dim()}-D input")
        return Call(shape, None, None, "no producing layer found")


def _call(model: nn.Module, example_input):
    if isinstance(example_input, Mapping):
        return model(**example_input)
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    return model(example_input)


def run_example(model: nn.Module, targets: dict[int, str], example_input) -> dict[int, list[Call]]:
    """One side-effect-free forward pass; returns {id(activation module): [Call, ...]}."""
    rec = _Recorder(model, targets)
    handles, seen = [], set()
    for name, m in model.named_modules():
        if m is not model:
            handles.append(m.register_forward_hook(rec.output_hook(name)))
        if id(m) in targets and id(m) not in seen:
            seen.add(id(m))
            handles.append(m.register_forward_pre_hook(rec.input_hook, with_kwargs=True))
    modes = {m: m.training for m in model.modules()}
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = sorted({b.device.index for b, _ in buffers if b.is_cuda}
                     | {p.device.index for p in model.parameters() if p.is_cuda})
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            _call(model, example_input)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
        with torch.no_grad():
            for b, saved in buffers:
                if b.shape == saved.shape:
                    b.copy_(saved)
    return rec.calls


def sequential_call(model: nn.Module, name: str) -> Call | None:
    """The call of the activation at ``name`` read from the module graph: inside an
    ``nn.Sequential`` (which calls its children in order) the previous child produces its input."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    if not isinstance(parent, nn.Sequential):
        return None
    keys = list(parent._modules)
    i = keys.index(attr)
    if i == 0:
        return None
    prev = parent._modules[keys[i - 1]]
    axis, size = producer_axis(prev), producer_size(prev)
    if axis is None or size is None:
        return None
    prev_name = f"{parent_name}.{keys[i - 1]}" if parent_name else keys[i - 1]
    return Call(None, axis, size, "after " + _describe(prev_name, prev) + " in nn.Sequential")


def hf_dummy_input(model: nn.Module) -> dict | None:
    """A (1, 8) ``input_ids`` batch for a Hugging Face model (it has ``config.vocab_size``)."""
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1:
        return None
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    ids = (torch.arange(8, device=device) % vocab).unsqueeze(0)
    batch = {"input_ids": ids}
    if getattr(config, "is_encoder_decoder", False):
        batch["decoder_input_ids"] = ids
    return batch
