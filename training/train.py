"""``train(config) -> metrics``: LoRA fine-tuning of the two-head classifier, calibration, export, report.

The loop is plain PyTorch so the two partial-label losses stay visible:

- emotion: exact labels use cross-entropy; partial evidence (``emotion_among``)
  uses ``-log sum_{y in allowed} p(y)``; records without emotion evidence are
  masked out. Exact labels are class-weighted by ``(1/frequency)**class_balance``.
- escalation: binary cross-entropy, masked where the label is missing;
- turn signals (``signals = true``): binary cross-entropy per signal, masked to
  the turns whose signals were annotated and to the signals of the turn's own
  speaker (a customer turn is never asked for ``refusal``, nor an agent turn for
  its emotion: agent turns carry no emotion or escalation label).

Each batch is drawn from the sources in the proportions of ``source_shares``
(sampling with replacement, fixed seed), so a large public set cannot drown
the in-domain conversations. Checkpoints (trainable tensors, optimiser state
and random generators' states as safetensors; counters, the scheduler and
the loss history as JSON) are written every ``checkpoint_every`` steps to
``<output_dir>.state/``, outside the model directory; ``resume=True``
continues from the last one exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tonewatch.configfile import ConfigError
from tonewatch.labels import EMOTION_LABELS, SIGNALS
from tonewatch.model.classifier import Classifier, _quiet_transformers
from tonewatch.model.directory import save_pretrained
from tonewatch.model.encoder import DEFAULT_BASE_MODEL, WEIGHTS_SHA256, resolve_base_model
from tonewatch.model.inputs import InputLimits
from tonewatch.model.modeling import HEAD_PREFIXES, TRAINED_ENCODER_PARAMETERS, build_network
from tonewatch.model.types import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    Calibration,
    ModelConfig,
    read_model_config,
    resolve_model_dir,
)
from tonewatch.training import metrics as metric_functions
from tonewatch.training.calibration import fit_calibration
from tonewatch.training.config import TrainCommand, TrainConfig
from tonewatch.training.dataset import (
    AGENT_TURNS_POOL,
    build_training_data,
    check_extra_data,
    source_shares,
    to_dataset,
    training_data_root,
)

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"
CACHE_DIR = "cache"
STATE_SUFFIX = ".state"
"""The training state of ``runs/x`` lives in ``runs/x.state/`` (see :func:`training_state_dir`)."""


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    emotion_allowed: torch.Tensor
    emotion_exact: torch.Tensor
    escalate: torch.Tensor
    weight: torch.Tensor
    signals: torch.Tensor | None = None
    """``[batch, len(SIGNALS)]``: 1.0, 0.0, or -1.0 where unknown (or the other speaker's signal)."""
    agent: torch.Tensor | None = None
    """``[batch]`` bool: which rows are agent turns (read for their signals only)."""

    def to(self, device: torch.device) -> Batch:
        return type(self)(
            **{name: None if value is None else value.to(device) for name, value in self.__dict__.items()}
        )

    def logits(self, network) -> tuple[torch.Tensor, ...]:
        """The network's outputs: emotion and escalation logits, and signal logits third for a signal model."""
        return network(self.input_ids, self.attention_mask, self.token_type_ids)


def _pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(sequence) for sequence in sequences), default=1)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for index, sequence in enumerate(sequences):
        ids[index, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[index, : len(sequence)] = 1
    return ids, mask


def collate(rows: list[dict], pad_id: int) -> Batch:
    """Pad a list of tokenised examples to the longest one."""
    ids, mask = _pad([row["input_ids"] for row in rows], pad_id)
    types = torch.zeros_like(ids)
    for index, row in enumerate(rows):
        types[index, : len(row["token_type_ids"])] = torch.tensor(row["token_type_ids"])
    return Batch(
        input_ids=ids,
        attention_mask=mask,
        token_type_ids=types,
        **_labels(rows),
    )


def _labels(rows: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "emotion_allowed": torch.tensor([row["emotion_allowed"] for row in rows], dtype=torch.bool),
        "emotion_exact": torch.tensor([row["emotion_exact"] for row in rows], dtype=torch.long),
        "escalate": torch.tensor([row["escalate"] for row in rows], dtype=torch.float),
        "weight": torch.tensor([row["weight"] for row in rows], dtype=torch.float),
        "signals": torch.tensor([row["signals"] for row in rows], dtype=torch.float),
        "agent": torch.tensor([row["speaker"] == "agent" for row in rows], dtype=torch.bool),
    }


def emotion_loss(logits: torch.Tensor, batch: Batch, class_weights: torch.Tensor) -> torch.Tensor:
    """Weighted partial-label negative log-likelihood, averaged over records with emotion evidence."""
    has_label = batch.emotion_allowed.any(dim=-1)
    log_probabilities = torch.log_softmax(logits.float(), dim=-1)
    allowed_log_mass = torch.logsumexp(log_probabilities.masked_fill(~batch.emotion_allowed, -1e9), dim=-1)
    exact = batch.emotion_exact >= 0
    class_weight = torch.where(exact, class_weights[batch.emotion_exact.clamp(min=0)], torch.ones_like(batch.weight))
    weights = batch.weight * class_weight * has_label
    return -(allowed_log_mass * weights).sum() / weights.sum().clamp(min=1e-6)


def escalation_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Weighted binary cross-entropy over records with an escalation label."""
    known = batch.escalate >= 0
    weights = batch.weight * known
    losses = nn.functional.binary_cross_entropy_with_logits(
        logits.float(), batch.escalate.clamp(min=0.0), reduction="none"
    )
    return (losses * weights).sum() / weights.sum().clamp(min=1e-6)


def signal_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Weighted binary cross-entropy per signal, averaged over the (turn, signal) pairs with a label: a turn whose
    signals were not annotated, and the other speaker's signals of an annotated turn, add nothing."""
    known = batch.signals >= 0
    weights = batch.weight.unsqueeze(-1) * known
    losses = nn.functional.binary_cross_entropy_with_logits(
        logits.float(), batch.signals.clamp(min=0.0), reduction="none"
    )
    return (losses * weights).sum() / weights.sum().clamp(min=1e-6)


def distillation_loss(
    emotion_logits: torch.Tensor,
    escalation_logits: torch.Tensor,
    teacher_emotion: torch.Tensor,
    teacher_escalation: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Match the teacher on every example: KL of the softened emotion distributions plus the cross-entropy to
    the teacher's softened escalation probability, both scaled by ``temperature**2`` (Hinton et al., 2015)."""
    t = temperature
    emotion = nn.functional.kl_div(
        torch.log_softmax(emotion_logits.float() / t, dim=-1),
        torch.log_softmax(teacher_emotion.float() / t, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    escalation = nn.functional.binary_cross_entropy_with_logits(
        escalation_logits.float() / t, torch.sigmoid(teacher_escalation.float() / t)
    )
    return (emotion + escalation) * t * t


def check_teacher(config: TrainConfig, limits: InputLimits) -> None:
    """Refuse a teacher that does not read the student's inputs, from its ``config.json`` alone (no weights are
    loaded and no random numbers drawn, so a run fails before it builds its data, and a valid run is unchanged)."""
    teacher = read_model_config(resolve_model_dir(config.teacher))
    if teacher.limits != limits:
        raise ConfigError(
            f"teacher {config.teacher} reads inputs with {teacher.limits}; this config reads inputs with {limits}: "
            "they must be the same"
        )
    if teacher.base_model != config.base_model:
        raise ConfigError(f"teacher base {teacher.base_model!r} differs from {config.base_model!r} (tokenizer)")


def load_teacher(config: TrainConfig, device: torch.device) -> nn.Module:
    """The teacher's network (LoRA merged, eval mode, frozen); :func:`check_teacher` has accepted it."""
    network = Classifier.from_pretrained(config.teacher, backend="torch").network.to(device).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


def class_weights_from(dataset, balance: float) -> torch.Tensor:
    """``(1/frequency)**balance`` of the exact emotion labels, normalised to mean 1."""
    counts = np.bincount([label for label in dataset["emotion_exact"] if label >= 0], minlength=len(EMOTION_LABELS))
    frequencies = np.maximum(counts, 1) / max(counts.sum(), 1)
    weights = frequencies**-balance
    return torch.tensor(weights / weights.mean(), dtype=torch.float)


def sample_plan(source_of_example: list[str], shares: dict[str, float], steps: int, batch_size: int, seed: int):
    """Example indices of every step: each draw picks a pool by share, then the pool's next example in a shuffled
    order that is reshuffled once used up, so every example of a pool is drawn once before any is drawn again."""
    rng = np.random.default_rng(seed)
    by_source: dict[str, list[int]] = {}
    for index, source in enumerate(source_of_example):
        by_source.setdefault(source, []).append(index)
    names = [name for name in shares if name in by_source]
    if not names:
        raise ConfigError("no training examples in any configured source")
    probabilities = np.array([shares[name] for name in names])
    probabilities = probabilities / probabilities.sum()
    choice = rng.choice(len(names), size=(steps, batch_size), p=probabilities)
    plan = np.empty((steps, batch_size), dtype=np.int64)
    for position, name in enumerate(names):
        where = choice == position
        needed = int(where.sum())
        pool = np.array(by_source[name])
        rounds = -(-needed // len(pool)) if needed else 0
        order = np.concatenate([rng.permutation(pool) for _ in range(rounds)]) if rounds else pool[:0]
        plan[where] = order[:needed]
    return plan


def group_by_length(plan: np.ndarray, lengths: np.ndarray, group_steps: int, seed: int) -> np.ndarray:
    """``plan`` with the examples of every ``group_steps`` consecutive steps regrouped by length.

    Within each window the examples are sorted by token length and cut back into batches of the same size,
    whose order is then shuffled, so that a batch pads to about its own examples' length instead of the
    longest of a mixed batch. Every step still sees ``batch_size`` examples, and each window sees exactly
    the examples it saw before."""
    if group_steps <= 1:
        return plan
    rng = np.random.default_rng([seed, 1])
    grouped = plan.copy()
    for start in range(0, len(plan), group_steps):
        window = plan[start : start + group_steps]
        flat = window.reshape(-1)
        ordered = flat[np.argsort(lengths[flat], kind="stable")].reshape(window.shape)
        grouped[start : start + len(window)] = ordered[rng.permutation(len(window))]
    return grouped


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = cuda but no CUDA device is available")
    return torch.device(name)


def add_lora(network, config: TrainConfig):
    """Wrap the encoder with LoRA factors (peft); train those, the token-type embeddings and the heads."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        bias="none",
    )
    network.encoder = get_peft_model(network.encoder, lora)
    for name, parameter in network.named_parameters():
        parameter.requires_grad = "lora_" in name or name.startswith(HEAD_PREFIXES)
        if _plain_name(name) in TRAINED_ENCODER_PARAMETERS:
            parameter.requires_grad = True
    return network


def _plain_name(name: str) -> str:
    """A parameter name without peft's wrapping (``encoder.base_model.model.`` -> ``encoder.``)."""
    return name.replace("base_model.model.", "").replace(".default", "")


def trainable_state(network) -> dict[str, torch.Tensor]:
    """The tensors a model directory stores, under the names the loader expects."""
    state = {}
    for name, parameter in network.named_parameters():
        if not parameter.requires_grad:
            continue
        plain = _plain_name(name)
        if ".lora_A" in plain or ".lora_B" in plain:
            plain = plain.removesuffix(".weight")
        state[plain] = parameter.detach().to("cpu", torch.float32).contiguous()
    return state


def model_config_for(config: TrainConfig, encoder_config, calibration: Calibration | None = None) -> ModelConfig:
    return ModelConfig(
        base_model=config.base_model,
        num_hidden_layers=config.num_hidden_layers,
        hidden_size=encoder_config.hidden_size,
        limits=config.limits,
        lora_r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_target_modules=tuple(config.lora_target_modules),
        calibration=calibration or Calibration(),
        name=config.resolved_model_name,
        version=config.model_version,
        base_weights_sha256=WEIGHTS_SHA256 if config.base_model == DEFAULT_BASE_MODEL else None,
        signals=SIGNALS if config.signals else (),
    )


def training_state_dir(output_dir: str | Path) -> Path:
    """Where a run keeps what only training needs (checkpoint, best step's weights, tokenised data): the sibling
    ``<output_dir>.state/``, so that the model directory holds only what a user ships."""
    output = Path(output_dir).absolute()
    return output.with_name(output.name + STATE_SUFFIX)


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """Every random state training draws from: torch's CPU (and CUDA) generators as tensors; numpy's and
    Python's as JSON values."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda.{index}"] = state
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    values = {
        "numpy": {"kind": kind, "keys": keys.tolist(), "position": position, "has_gauss": has_gauss,
                  "cached_gaussian": cached_gaussian},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }  # fmt: skip
    return tensors, values


def set_rng_state(tensors: dict[str, torch.Tensor], values: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[f"torch_cuda.{index}"] for index in range(len(tensors) - 1) if f"torch_cuda.{index}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    state = values["numpy"]
    np.random.set_state(
        (state["kind"], np.array(state["keys"], dtype=np.uint32), state["position"], state["has_gauss"],
         state["cached_gaussian"])
    )  # fmt: skip
    state = values["python"]
    random.setstate((state["version"], tuple(state["internal"]), state["gauss_next"]))


@dataclass
class Checkpoint:
    """What a resumed run continues from besides the weights and the optimiser: the counters and histories."""

    step: int
    best: dict
    losses: list[float]
    validation: list[dict]
    rng_tensors: dict[str, torch.Tensor]
    rng_values: dict


def save_checkpoint(
    directory: Path, network, optimizer, scheduler, step: int, best: dict, losses: list, validation: list
) -> None:
    """Trainable tensors, AdamW state and the random generators' states as safetensors; counters, the
    scheduler, the loss and validation histories as JSON; replaced atomically."""
    from safetensors.torch import save_file

    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    names = [name for name, parameter in network.named_parameters() if parameter.requires_grad]
    save_file(
        {name: network.get_parameter(name).detach().cpu().contiguous() for name in names},
        str(staging / "trainable.safetensors"),
    )
    optimizer_state = optimizer.state_dict()
    tensors, steps = {}, {}
    for index, state in optimizer_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0:
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                steps[f"{index}.{key}"] = float(value)
    save_file(tensors, str(staging / "optimizer.safetensors"))
    rng_tensors, rng_values = rng_state()
    save_file({name: value.contiguous() for name, value in rng_tensors.items()}, str(staging / "rng.safetensors"))
    counters = {
        "step": step,
        "best": best,
        "optimizer_scalars": steps,
        "scheduler": scheduler.state_dict(),
        "rng": rng_values,
        "losses": losses,
        "validation": validation,
    }
    (staging / "state.json").write_text(json.dumps(counters, indent=2, default=float))
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def load_checkpoint(directory: Path, network, optimizer, scheduler) -> Checkpoint:
    """Load the weights, optimiser and scheduler of a checkpoint in place; the rest is returned (the random
    states are set by the caller just before the next step, after any setup that draws numbers)."""
    from safetensors.torch import load_file

    trainable = load_file(str(directory / "trainable.safetensors"))
    with torch.no_grad():
        for name, value in trainable.items():
            network.get_parameter(name).copy_(value)
    counters = json.loads((directory / "state.json").read_text())
    tensors = load_file(str(directory / "optimizer.safetensors"))
    state_dict = optimizer.state_dict()
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in counters["optimizer_scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = torch.tensor(value)
    state_dict["state"] = state
    optimizer.load_state_dict(state_dict)
    scheduler.load_state_dict(counters["scheduler"])
    # The learning rate of the next step: a new optimiser holds step 0's. Computed as the scheduler's step does,
    # so a resumed run steps with the very same values (and a run extended to more steps with its new schedule).
    for group, schedule, base_lr in zip(optimizer.param_groups, scheduler.lr_lambdas, scheduler.base_lrs, strict=True):
        group["lr"] = base_lr * schedule(scheduler.last_epoch)
    rng_file = directory / "rng.safetensors"
    return Checkpoint(
        step=counters["step"],
        best=counters["best"],
        losses=counters.get("losses", []),
        validation=counters.get("validation", []),
        rng_tensors=load_file(str(rng_file)) if rng_file.is_file() else {},
        rng_values=counters.get("rng", {}),
    )


@torch.no_grad()
def validation_scores(network, dataset, pad_id: int, device: torch.device, batch_size: int = 64) -> dict:
    """Emotion macro-F1 (exact labels) and escalation F1 at 0.5 on a tokenised dataset; for a signal model also
    the macro-F1 at 0.5 over the signals with a positive label (``signal_macro_f1``), which then counts in the
    score that picks the best step."""
    network.eval()
    order = np.argsort([len(ids) for ids in dataset["input_ids"]])
    rows = dataset.select_columns(
        ["input_ids", "token_type_ids", "emotion_allowed", "emotion_exact", "escalate", "weight", "speaker", "signals"]
    )
    emotion_pred = np.empty(len(dataset), dtype=np.int64)
    escalation_score = np.empty(len(dataset))
    signal_score = np.full((len(dataset), len(SIGNALS)), np.nan)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size].tolist()
        batch = collate([rows[int(index)] for index in chunk], pad_id).to(device)
        outputs = batch.logits(network)
        emotion_pred[chunk] = outputs[0].argmax(-1).cpu().numpy()
        escalation_score[chunk] = torch.sigmoid(outputs[1].float()).cpu().numpy()
        if len(outputs) > 2:
            signal_score[chunk] = torch.sigmoid(outputs[2].float()).cpu().numpy()
    network.train()
    exact = np.array(dataset["emotion_exact"])
    escalate = np.array(dataset["escalate"])
    known = exact >= 0
    emotion_f1 = metric_functions.macro_f1(exact[known], emotion_pred[known], len(EMOTION_LABELS))
    known_escalation = escalate >= 0
    escalation_f1 = metric_functions.binary_f1(
        escalate[known_escalation] > 0.5, escalation_score[known_escalation] >= 0.5
    )
    scores = {"emotion_macro_f1": emotion_f1, "escalation_f1": escalation_f1}
    if getattr(network, "signal_head", None) is not None:
        targets = np.array(dataset["signals"], dtype=float).reshape(len(dataset), len(SIGNALS))
        per_signal = [
            metric_functions.binary_f1(targets[known, column] > 0.5, signal_score[known, column] >= 0.5)
            for column in range(len(SIGNALS))
            if (known := targets[:, column] >= 0).any() and (targets[known, column] > 0.5).any()
        ]
        scores["signal_macro_f1"] = float(np.mean(per_signal)) if per_signal else 0.0
    return {**scores, "score": float(np.mean(list(scores.values())))}


def train(config: TrainConfig, resume: bool = False, *, command: TrainCommand | None = None) -> dict:
    """Train, calibrate and export a model directory to ``config.output_dir``; return its metrics.

    The metrics are those of ``training_summary.json`` (best step, its validation scores, calibration,
    records per source, time, device) plus ``losses`` (the training loss of every step, ``losses[i]`` after
    step ``i + 1``) and ``validation_history`` (the validation scores at every validation step); a resumed run
    returns the whole run's histories. ``resume=True`` continues from the checkpoint in
    :func:`training_state_dir` and reproduces the run it continues: the same losses and weights.

    ``command`` (the config file and ``--set`` overrides the CLI was given) is recorded in
    ``training_summary.json`` for the model card's reproduction line.
    """
    check_extra_data(config)  # a missing file or unreadable type: one line, before seconds of loading
    output = Path(config.output_dir)
    state_dir = training_state_dir(output)
    checkpoint = state_dir / CHECKPOINT_DIR
    if resume and not (checkpoint / "state.json").is_file():
        raise ConfigError(
            f"nothing to resume: no checkpoint in {checkpoint} (a run writes one every checkpoint_every steps); "
            "run without --resume to start a new run"
        )
    if output.exists() and (output / CONFIG_NAME).exists() and not resume:
        raise ConfigError(f"output_dir {output} already holds a model; choose another output_dir or pass --resume")
    config.data_root = training_data_root(config)  # recorded resolved; fails here, before any work, when missing

    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    _quiet_transformers()
    started = time.perf_counter()
    output.mkdir(parents=True, exist_ok=True)
    config.save(output / "training_config.json")
    if config.threads:
        torch.set_num_threads(config.threads)
    # Every generator a run draws from; a resumed run restores their states from its checkpoint.
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    random.seed(config.seed)
    device = pick_device(config.device)

    base_path = resolve_base_model(config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    limits = config.limits
    if config.teacher:
        check_teacher(config, limits)  # before minutes of data building
    logger.info("loading the training sources")
    data = build_training_data(config)
    logger.info("records per source: %s", json.dumps(data.counts()))
    cache = state_dir / CACHE_DIR
    train_records = [record for records in data.train.values() for record in records]
    pool_of_example = [name for name, records in data.train.items() for _ in records]
    logger.info("tokenising %d training records (cached in %s)", len(train_records), cache)
    train_set = to_dataset(train_records, tokenizer, limits, cache)
    in_domain_validation_records = data.validation.get("callcenter_train", []) + data.validation.get(
        AGENT_TURNS_POOL, []
    )
    in_domain_validation = to_dataset(in_domain_validation_records, tokenizer, limits, cache)
    if len(in_domain_validation) == 0:
        in_domain_validation = to_dataset(
            [record for records in data.validation.values() for record in records], tokenizer, limits, cache
        )

    network = build_network(model_config_for(config, _encoder_config(base_path, config)), base_path, config.dropout)
    network = add_lora(network, config).to(device)
    head_parameters = [p for n, p in network.named_parameters() if p.requires_grad and n.startswith(HEAD_PREFIXES)]
    other_parameters = [p for n, p in network.named_parameters() if p.requires_grad and not n.startswith(HEAD_PREFIXES)]
    optimizer = torch.optim.AdamW(
        [
            {"params": other_parameters, "lr": config.learning_rate},
            {"params": head_parameters, "lr": config.head_learning_rate},
        ],
        weight_decay=config.weight_decay,
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps)
    class_weights = class_weights_from(train_set, config.class_balance).to(device)
    # The data order of every step, drawn up front from its own seeded generator: a resumed run redraws it.
    if len(train_set) != len(pool_of_example):
        raise RuntimeError("tokenising changed the number of training examples")
    shares = source_shares(config, pools=set(pool_of_example))
    plan = sample_plan(pool_of_example, shares, config.max_steps, config.batch_size, config.seed)
    if config.length_group_steps > 1:
        lengths = np.array([len(ids) for ids in train_set["input_ids"]])
        plan = group_by_length(plan, lengths, config.length_group_steps, config.seed)
        logger.info(
            "length grouping over %d steps: %.0f padded tokens per step instead of %.0f",
            config.length_group_steps,
            lengths[plan].max(axis=1).mean() * config.batch_size,
            lengths[sample_plan(pool_of_example, shares, config.max_steps, config.batch_size, config.seed)]
            .max(axis=1)
            .mean()
            * config.batch_size,
        )

    step, best = 0, {"score": -1.0, "step": 0}
    losses: list[float] = []
    validation_history: list[dict] = []
    resumed = None
    if resume:
        resumed = load_checkpoint(checkpoint, network, optimizer, scheduler)
        step, best = resumed.step, resumed.best
        losses, validation_history = list(resumed.losses), list(resumed.validation)
        logger.info("resumed from step %d (%s)", step, checkpoint)
    teacher = load_teacher(config, device) if config.teacher else None
    if teacher is not None:
        logger.info(
            "distilling from %s (weight %.2f, temperature %.1f)",
            config.teacher,
            config.distill_weight,
            config.distill_temperature,
        )
    n_trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
    logger.info(
        "training %d parameters for %d steps on %s (%d examples)", n_trainable, config.max_steps, device, len(train_set)
    )
    if resumed is not None and resumed.rng_tensors:
        set_rng_state(resumed.rng_tensors, resumed.rng_values)  # last: the setup above may draw numbers

    network.train()
    pad_id = tokenizer.pad_token_id
    loop_started, running = time.perf_counter(), []
    first_step = step
    while step < config.max_steps:
        rows = train_set.select(plan[step].tolist())
        batch = collate(list(rows), pad_id).to(device)
        outputs = batch.logits(network)
        emotion_logits, escalation_logits = outputs[0], outputs[1]
        loss = emotion_loss(emotion_logits, batch, class_weights) + config.escalation_loss_weight * escalation_loss(
            escalation_logits, batch
        )
        if config.signals:
            loss = loss + config.signal_loss_weight * signal_loss(outputs[2], batch)
        customer = ~batch.agent  # the teacher's emotion and escalation mean nothing on an agent turn
        if teacher is not None and customer.any():
            with torch.no_grad():
                teacher_outputs = batch.logits(teacher)
            loss = (1 - config.distill_weight) * loss + config.distill_weight * distillation_loss(
                emotion_logits[customer],
                escalation_logits[customer],
                teacher_outputs[0][customer],
                teacher_outputs[1][customer],
                config.distill_temperature,
            )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in network.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        losses.append(loss.item())
        running.append(losses[-1])
        if step % config.log_every == 0 or step == config.max_steps:
            per_step = (time.perf_counter() - loop_started) / (step - first_step)
            logger.info(
                "step %d/%d  loss %.4f  %.2f s/step  eta %.0f min",
                step,
                config.max_steps,
                float(np.mean(running)),
                per_step,
                per_step * (config.max_steps - step) / 60,
            )
            running = []
        if step % config.eval_every == 0 or step == config.max_steps:
            scores = validation_scores(network, in_domain_validation, pad_id, device)
            validation_history.append({"step": step, **scores})
            logger.info("validation at step %d: %s", step, json.dumps(scores))
            if scores["score"] > best["score"]:
                best = {**scores, "step": step}
                _save_best(state_dir / BEST_DIR, network)
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            save_checkpoint(checkpoint, network, optimizer, scheduler, step, best, losses, validation_history)

    # Export the best validation step, calibrate it through the one loader, and write the model card.
    from safetensors.torch import load_file

    logger.info("writing the model directory from the best step (%d)", best["step"])
    state = load_file(str(state_dir / BEST_DIR / WEIGHTS_NAME))
    model_config = model_config_for(config, network.encoder.config)
    save_pretrained(output, state, model_config, tokenizer)
    classifier = Classifier.from_pretrained(output, backend="torch")  # calibrate the reference network
    validation_records = in_domain_validation_records  # with signals, the held-out agent turns too
    logger.info("calibrating on %d held-out callcenter_train turns", len(validation_records))
    model_config.calibration = fit_calibration(classifier, validation_records)
    logger.info("writing the calibrated model directory")
    save_pretrained(output, state, model_config, tokenizer)
    summary = {
        "best_step": best["step"],
        "validation": {key: value for key, value in best.items() if key != "step"},
        "calibration": model_config.calibration.__dict__,
        "records": data.counts(),
        "batch_shares": shares,
        "command": command.to_json() if command is not None else None,
        "train_minutes": round((time.perf_counter() - started) / 60, 1),
        "device": str(device),
        "trainable_parameters": n_trainable,
        "losses": losses,
        "validation_history": validation_history,
    }
    (output / "training_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    readers = fit_readers(output, state_dir, config)
    if readers:
        summary["readers"] = readers
        (output / "training_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    if config.evaluate:
        from tonewatch.training.evaluate import EvalConfig, evaluate

        evaluate(output, EvalConfig(data_root=config.data_root, seed=config.seed))
    from tonewatch.training.card import write_model_card

    logger.info("writing the model card (%s)", output / "README.md")
    write_model_card(output)
    logger.info(
        "model written to %s (%.1f min); training state (checkpoint for --resume, tokenised data) in %s",
        output,
        summary["train_minutes"],
        state_dir,
    )
    return summary


def fit_readers(output: Path, state_dir: Path, config: TrainConfig) -> dict:
    """Fit the n-gram readers the recipe asks for onto the model just written (the signal reader, then the emotion
    expert, as ``tonewatch fit-signals`` and ``tonewatch fit-emotion`` do) and put the result in its place; returns
    each fit's summary (empty when the recipe asks for none)."""
    from tonewatch.training.emotion_reader import fit_emotion_reader
    from tonewatch.training.signal_reader import fit_signals

    work = state_dir / "readers"
    shutil.rmtree(work, ignore_errors=True)
    current, summaries = output, {}
    if config.signal_reader == "char_ngrams":
        logger.info("fitting the char n-gram signal reader")
        summaries["signal_reader"] = fit_signals(current, work / "signals", signal_labels_dir=config.signal_labels_dir)
        current = work / "signals"
    if config.emotion_reader == "char_ngrams":
        logger.info("fitting the emotion n-gram expert")
        summaries["emotion_reader"] = fit_emotion_reader(current, work / "emotion", data_root=config.data_root)
        current = work / "emotion"
    if current != output:
        for path in sorted(current.iterdir()):
            if path.is_file():
                shutil.copyfile(path, output / path.name)
        shutil.rmtree(work)
    return summaries


def _encoder_config(base_path: str, config: TrainConfig):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(base_path, num_hidden_layers=config.num_hidden_layers)


def _save_best(directory: Path, network) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(network), str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
