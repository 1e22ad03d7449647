"""The networks: a pretrained encoder with an emotion head and an escalation head.

Two architectures share the encoder, the heads and the stored format:

``joint`` (:class:`TurnClassifierNetwork`, models v1-v2)
    the turn and its context are one token sequence.
``turns`` (:class:`TurnContextNetwork`)
    every turn is encoded on its own into one vector, and a small context
    layer reads the labelled turn's vector beside the vectors of the turns
    before it. A turn's vector depends on its text only, so a live
    conversation or a transcript encodes each turn once and reuses it as
    context for the turns that follow.

Joint: one forward pass gives both outputs. The encoder's final hidden states are
mean-pooled separately over the labelled turn (token type 0) and over its
context (token type 1); the two pooled vectors, concatenated, feed

- the emotion head: 4 logits, softmax over ``EMOTION_LABELS``;
- the escalation head: 1 logit, sigmoid.

A trained model directory stores only what differs from the base encoder:
LoRA factors (merged into the base weights at load time, so inference needs
no ``peft``), the token-type embeddings, and the heads. That keeps it to a
few MB while the base is rebuilt offline (``tonewatch.model.encoder``).
"""

from __future__ import annotations

import torch
from torch import nn

from tonewatch.labels import EMOTION_LABELS, SPEAKERS


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [batch, seq, dim] over positions where ``mask`` [batch, seq] is 1 (0 if none)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class TurnClassifierNetwork(nn.Module):
    """Encoder + pooled turn/context features + emotion and escalation heads."""

    def __init__(self, encoder: nn.Module, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.emotion_head = nn.Linear(2 * hidden_size, len(EMOTION_LABELS))
        self.escalation_head = nn.Linear(2 * hidden_size, 1)

    def features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        turn_mask = attention_mask * (token_type_ids == 0)
        context_mask = attention_mask * (token_type_ids == 1)
        return torch.cat([masked_mean(hidden, turn_mask), masked_mean(hidden, context_mask)], dim=-1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(emotion_logits [batch, 4], escalation_logit [batch])``."""
        pooled = self.dropout(self.features(input_ids, attention_mask, token_type_ids))
        return self.emotion_head(pooled), self.escalation_head(pooled).squeeze(-1)


class ContextHead(nn.Module):
    """Turn vectors in, both logits out: the labelled turn's vector read with the vectors of the turns before it.

    Input ``vectors`` [batch, slots, hidden] are right-aligned: the labelled
    turn in the last slot, earlier turns to its left (oldest first), unused
    slots on the far left with ``mask`` 0. Each slot gets a speaker embedding
    and an embedding of its distance from the labelled turn; one pre-norm
    transformer layer mixes the slots; the labelled turn's own vector and its
    mixed vector, concatenated, feed the two heads.
    """

    def __init__(self, hidden_size: int, max_context_turns: int, dropout: float = 0.1, num_heads: int = 4):
        super().__init__()
        self.max_slots = max_context_turns + 1
        self.speaker_embeddings = nn.Embedding(len(SPEAKERS), hidden_size)
        self.distance_embeddings = nn.Embedding(self.max_slots, hidden_size)
        self.layer = nn.TransformerEncoderLayer(
            hidden_size, num_heads, 2 * hidden_size, dropout, batch_first=True, norm_first=True
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.emotion_head = nn.Linear(2 * hidden_size, len(EMOTION_LABELS))
        self.escalation_head = nn.Linear(2 * hidden_size, 1)

    def forward(
        self, vectors: torch.Tensor, speakers: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        slots = vectors.shape[1]
        if slots > self.max_slots:
            raise ValueError(f"{slots} slots given; this head reads at most {self.max_slots}")
        distance = torch.arange(slots - 1, -1, -1, device=vectors.device)
        mixed = vectors + self.speaker_embeddings(speakers) + self.distance_embeddings(distance)
        mixed = self.layer(mixed, src_key_padding_mask=~mask.bool())
        features = torch.cat([vectors[:, -1], self.norm(mixed[:, -1])], dim=-1)
        features = self.dropout(features)
        return self.emotion_head(features), self.escalation_head(features).squeeze(-1)


class TurnContextNetwork(nn.Module):
    """Encoder (one turn at a time, mean-pooled) + :class:`ContextHead` (architecture ``turns``)."""

    def __init__(self, encoder: nn.Module, hidden_size: int, max_context_turns: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.context = ContextHead(hidden_size, max_context_turns, dropout)

    def encode_turns(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One vector per turn: ``<s> turn </s>`` ids [turns, seq] -> [turns, hidden]."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return masked_mean(hidden, attention_mask)

    def encode_turns_bucketed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, bucket: int = 16
    ) -> torch.Tensor:
        """:meth:`encode_turns` over groups of similar length, each cut to its own longest turn (training)."""
        if len(input_ids) <= bucket:
            width = int(attention_mask.sum(1).max())
            return self.encode_turns(input_ids[:, :width], attention_mask[:, :width])
        lengths = attention_mask.sum(1)
        order = torch.argsort(lengths)
        pieces = []
        for start in range(0, len(order), bucket):
            rows = order[start : start + bucket]
            width = int(lengths[rows].max())
            pieces.append(self.encode_turns(input_ids[rows, :width], attention_mask[rows, :width]))
        return torch.cat(pieces)[torch.argsort(order)]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        context_ids: torch.Tensor,
        context_mask: torch.Tensor,
        context_index: torch.Tensor,
        context_speakers: torch.Tensor,
        context_grad: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of a training batch: labelled turns [batch, seq] and their context.

        ``context_ids`` [n, seq] are the distinct context turns of the batch;
        ``context_index`` [batch, slots-1] points into them (-1 = no turn),
        right-aligned, oldest first; ``context_speakers`` gives each slot's
        speaker id. Without ``context_grad`` the context turns are encoded
        without gradient (as at inference, where they come from a cache),
        which makes a step about a third cheaper.
        """
        target = self.encode_turns_bucketed(input_ids, attention_mask)
        batch, width = context_index.shape
        present = context_index >= 0
        context = target.new_zeros(batch, width, target.shape[-1])
        if len(context_ids) and width:
            with torch.set_grad_enabled(context_grad and torch.is_grad_enabled()):
                encoded = self.encode_turns_bucketed(context_ids, context_mask)
            context = torch.where(present.unsqueeze(-1), encoded[context_index.clamp(min=0)].to(target.dtype), context)
        vectors = torch.cat([context, target.unsqueeze(1)], dim=1)
        mask = torch.cat([present, torch.ones(batch, 1, dtype=torch.bool, device=present.device)], dim=1)
        speakers = torch.cat(
            [context_speakers.clamp(min=0), torch.zeros(batch, 1, dtype=torch.long, device=present.device)], dim=1
        )
        return self.context(vectors, speakers, mask)


HEAD_PREFIXES = ("emotion_head.", "escalation_head.", "context.")
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
