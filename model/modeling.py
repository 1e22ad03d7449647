"""The network: a pretrained encoder with an emotion head and an escalation head.

The turn and its context are one token sequence (``tonewatch.model.inputs``);
one forward pass gives both outputs. The encoder's final hidden states are
mean-pooled separately over the labelled turn (token type 0) and over its
context (token type 1); the two pooled vectors, concatenated, feed

- the emotion head: 4 logits, softmax over ``EMOTION_LABELS``;
- the escalation head: 1 logit, sigmoid;
- only in a model with turn signals (``ModelConfig.signals``), the signal head: one logit per signal, each a
  sigmoid. A customer turn is read for the customer signals, an agent turn (encoded with its speaker prefix,
  ``tonewatch.model.inputs``) for the agent signals; the other columns of a turn are not trained.

A trained model directory stores only what differs from the base encoder:
LoRA factors (merged into the base weights at load time, so inference needs
no ``peft``), the token-type embeddings, and the heads. That keeps it to a
few MB while the base is rebuilt offline (``tonewatch.model.encoder``).
"""

from __future__ import annotations

import torch
from torch import nn

from tonewatch.labels import EMOTION_LABELS
from tonewatch.model.types import ModelConfig


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [batch, seq, dim] over positions where ``mask`` [batch, seq] is 1 (0 if none)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class TurnClassifierNetwork(nn.Module):
    """Encoder + pooled turn/context features + emotion and escalation heads (+ the signal head, if any)."""

    def __init__(self, encoder: nn.Module, hidden_size: int, dropout: float = 0.1, num_signals: int = 0):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.emotion_head = nn.Linear(2 * hidden_size, len(EMOTION_LABELS))
        self.escalation_head = nn.Linear(2 * hidden_size, 1)
        # Created only for a signal model, so that older models' state dicts and ONNX graphs are unchanged.
        self.signal_head = nn.Linear(2 * hidden_size, num_signals) if num_signals else None

    def features(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
        ).last_hidden_state
        turn_mask = attention_mask * (token_type_ids == 0)
        context_mask = attention_mask * (token_type_ids == 1)
        return torch.cat([masked_mean(hidden, turn_mask), masked_mean(hidden, context_mask)], dim=-1)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        inputs_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """``(emotion_logits [batch, 4], escalation_logit [batch])``, and ``signal_logits [batch, signals]``
        third for a model with a signal head. ``inputs_embeds`` (the word embeddings of the tokens, already looked
        up) stands in for ``input_ids``: what the ONNX export takes."""
        pooled = self.dropout(self.features(input_ids, attention_mask, token_type_ids, inputs_embeds))
        outputs = (self.emotion_head(pooled), self.escalation_head(pooled).squeeze(-1))
        if self.signal_head is not None:
            outputs += (self.signal_head(pooled),)
        return outputs


def build_network(config: ModelConfig, base_path: str, dropout: float = 0.1) -> TurnClassifierNetwork:
    """The network around the base encoder at ``base_path``, cut to ``config.num_hidden_layers`` layers."""
    from tonewatch.model.encoder import load_base_encoder

    encoder = load_base_encoder(base_path, config.num_hidden_layers)
    return TurnClassifierNetwork(
        encoder, encoder.config.hidden_size, dropout=dropout, num_signals=len(config.head_signals)
    )


HEAD_PREFIXES = ("emotion_head.", "escalation_head.", "signal_head.")
TRAINED_ENCODER_PARAMETERS = ("encoder.embeddings.token_type_embeddings.weight",)
"""Encoder parameters trained in full (besides LoRA factors) and stored in the model directory."""


def lora_delta(lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> torch.Tensor:
    """The weight update ``scaling * B @ A`` of one LoRA pair."""
    return (lora_b.float() @ lora_a.float()) * scaling


def merge_lora(encoder: nn.Module, lora: dict[str, torch.Tensor], scaling: float) -> int:
    """Add every LoRA update in ``lora`` (``<module>.lora_A`` / ``<module>.lora_B``) to ``encoder``'s weights.

    Returns the number of merged modules; raises ``KeyError`` for a module
    the encoder does not have, so a model saved for another base fails loudly.
    """
    modules = dict(encoder.named_modules())
    merged = 0
    for key in sorted(lora):
        if not key.endswith(".lora_A"):
            continue
        name = key[: -len(".lora_A")]
        if name not in modules:
            raise KeyError(f"LoRA weights for {name!r}, which the encoder does not have")
        weight = modules[name].weight
        with torch.no_grad():
            weight += lora_delta(lora[key], lora[f"{name}.lora_B"], scaling).to(weight.dtype)
        merged += 1
    return merged
