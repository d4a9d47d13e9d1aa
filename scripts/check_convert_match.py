"""How far ``tmaf.convert(..., init="match")`` moves a briefly trained tiny GPT-2's logits.

    python scripts/check_convert_match.py --seeds 0-7 > results/integrations/convert-match-gpt2.txt

Per seed: GPT-2 (2 layers, 2 heads, width 64, vocabulary 256) trained 20 AdamW steps (lr 1e-2,
batch 4 x 16 tokens of one repeating random sequence; the recipe of
tests/integrations/test_transformers.py), then converted with no other arguments than the kind
to "continuous_diagonal" with init="match" (each site fitted to the function it replaces,
NewGELUActivation -> gelu_tanh) and with the default ReLU start; printed: the final training
loss, max |logit| of the trained model, and max |logit change| of each conversion on a (4, 32)
batch. Needs transformers (the hf extra).
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch


def trained_gpt2(seed: int, steps: int = 20):
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=256, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(0, 256, (64,), generator=g)
    for _ in range(steps):
        batch = torch.stack([text.roll(-int(k))[:16] for k in torch.randint(0, 48, (4,), generator=g)])
        loss = model(batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), torch.randint(0, 256, (4, 32), generator=g), loss.item()


def main(argv=None) -> int:
    import tmaf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-7", help="first-last (inclusive)")
    args = parser.parse_args(argv)
    first, last = (int(v) for v in args.seeds.split("-"))
    match, relu = [], []
    print("seed  final loss  max|logit|  max|change| match  max|change| relu start")
    for seed in range(first, last + 1):
        model, ids, loss = trained_gpt2(seed)
        with torch.no_grad():
            logits = model(ids).logits
            m = tmaf.convert(copy.deepcopy(model), "continuous_diagonal", init="match")
            r = tmaf.convert(copy.deepcopy(model), "continuous_diagonal")
            match.append((m(ids).logits - logits).abs().max().item())
            relu.append((r(ids).logits - logits).abs().max().item())
        print(f"{seed:4d}  {loss:10.3f}  {logits.abs().max().item():10.3f}  {match[-1]:17.3f}  "
              f"{relu[-1]:22.3f}")
    print(f"init='match': median {statistics.median(match):.3f}, max {max(match):.3f}; ReLU start: "
          f"median {statistics.median(relu):.3f}, max {max(relu):.3f}; smallest ratio relu/match "
          f"{min(r / m for r, m in zip(relu, match, strict=True)):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
