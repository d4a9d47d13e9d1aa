"""``tmaf train``: image classification with checkpoints, exact resume, seeds and DDP.

config (one frozen dataclass) -> data (verified cache) -> model (activation factory) ->
trainer (atomic checkpoints, deterministic batches) -> metrics.jsonl + results.json.
"""
