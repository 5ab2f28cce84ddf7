"""One micro-batch as the model takes it: token ids, labels, positions and the attention mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .chat import IGNORE
from .segment_attention import SegmentLayout


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T], IGNORE where no loss
    position_ids: torch.Tensor | None  # packed: restart per example (shared prefix: continue from it)
    attention_mask: torch.Tensor | None  # padded: [B, T], 1 on real tokens; shared prefix: [B, 1, T, T]
    real_tokens: int  # tokens of the examples trained on (not padding; a shared prefix once per example)
    segments: SegmentLayout | None = None  # packed: the examples' blocks, for segment_attention

    @property
    def target_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())

    def to(self, device) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.input_ids), move(self.labels), move(self.position_ids), move(self.attention_mask),
                     self.real_tokens, self.segments.to(device) if self.segments is not None else None)

    def model_inputs(self, segmented: bool = False) -> dict:
        """The model's keyword arguments; with `segmented` (a model on segment_attention), the blocks too."""
        out = {"input_ids": self.input_ids}
        if segmented and self.segments is not None:
            out["segments"] = self.segments
        if self.position_ids is not None:
            out["position_ids"] = self.position_ids
        if self.attention_mask is not None:
            out["attention_mask"] = self.attention_mask
        return out
