"""One micro-batch as the model takes it: token ids, labels, positions and the attention mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .chat import IGNORE


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T], IGNORE where no loss
    position_ids: torch.Tensor | None  # packed: restart per example (shared prefix: continue from it)
    attention_mask: torch.Tensor | None  # padded: [B, T], 1 on real tokens; shared prefix: [B, 1, T, T]
    real_tokens: int  # tokens of the examples trained on (not padding; a shared prefix once per example)

    @property
    def target_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())

    def to(self, device) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.input_ids), move(self.labels), move(self.position_ids), move(self.attention_mask),
                     self.real_tokens)

    def model_inputs(self) -> dict:
        out = {"input_ids": self.input_ids}
        if self.position_ids is not None:
            out["position_ids"] = self.position_ids
        if self.attention_mask is not None:
            out["attention_mask"] = self.attention_mask
        return out
