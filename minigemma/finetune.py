"""Fine-tuning with LoRA: the training loop behind ``python -m minigemma finetune``, on one process or many.

One step: take the next global batch of examples (a seeded shuffle, so a step's batch depends only
on the seed and the step number), run the model *without its head* (``Gemma.hidden_states``), apply
the head only where there is a label, and take the cross-entropy summed over those tokens divided
by the number of labelled tokens in the whole global batch. Only the positions of the model's turn
carry labels (``sft.py``): for a tool-calling chat of 400 tokens that is ~40, so skipping the
262,144-row head everywhere else saves most of a naive step's arithmetic. AdamW updates the
adapters (``lora.py``), nothing else.

**More than one process (DDP).** Under ``torchrun --nproc_per_node K`` every process loads the same
model and takes its share of each global batch (examples ``rank, rank + K, ...``).
``DistributedDataParallel`` (https://pytorch.org/docs/stable/notes/ddp.html) averages the adapters'
gradients over the processes after each backward pass; each process scales its loss by K so that
the average is the gradient of the global mean. Same seed, same data: the same adapters as one
process, up to float rounding. gloo carries the gradients on CPU, NCCL on CUDA.
"""

import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .lora import load_adapter, save_adapter, trainable_parameters
from .sft import IGNORE, read_jsonl, tokenize


def distributed():
    """(rank, world size), starting the process group if torchrun launched us."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def prepare(tokenizer, path, max_length, warn=True) -> list:
    """A JSONL file -> tokenized ``Example``s, warning once about how many were cut at ``max_length``."""
    examples = []
    for item in read_jsonl(path):
        try:
            examples.append(tokenize(tokenizer, item, max_length))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    cut = sum(e.truncated for e in examples)
    if cut and warn:
        warnings.warn(f"{path}: {cut} of {len(examples)} examples are longer than max_length={max_length} "
                      "tokens and were cut to it", stacklevel=2)
    return examples


def global_batch(examples, batch_size, seed, step) -> list:
    """The examples of one step: consecutive slices of a seeded shuffle, reshuffled every epoch."""
    per_epoch = len(examples) // batch_size  # the last incomplete batch of an epoch is skipped
    if per_epoch == 0:
        raise ValueError(f"the batch size {batch_size} is larger than the data set ({len(examples)} examples)")
    epoch, k = divmod(step, per_epoch)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return [examples[i] for i in order[k * batch_size:(k + 1) * batch_size].tolist()]


def pad(examples, pad_id, device=None):
    """Examples -> ids (B, T) and targets (B, T), padded on the right (causal attention never looks
    right, so padding changes nothing for the real tokens, and its targets are IGNORE)."""
    T = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    for b, e in enumerate(examples):
        ids[b, :len(e.ids)] = torch.tensor(e.ids)
        targets[b, :len(e.targets)] = torch.tensor(e.targets)
    return ids.to(device), targets.to(device)


class SummedLoss(nn.Module):
    """``(ids, targets) -> summed cross-entropy over the labelled positions``, a module so that DDP
    can wrap its forward pass. The head runs on the labelled positions only."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, targets):  # (B, T), (B, T)
        hidden = self.model.hidden_states(ids)  # (B, T, D)
        labelled = targets != IGNORE  # (B, T)
        logits = self.model.logits(hidden[labelled])  # (N, vocab): N labelled positions
        return F.cross_entropy(logits.float(), targets[labelled], reduction="sum")


def _all_sum(x: torch.Tensor, world):
    if world > 1:
        dist.all_reduce(x)
    return x


def evaluate(model, examples, pad_id, batch_size=4, rank=0, world=1) -> float:
    """Mean cross-entropy per labelled token over ``examples`` (every process its share)."""
    device = next(model.parameters()).device
    loss = SummedLoss(model)
    total = torch.zeros(2, dtype=torch.float64)  # (summed loss, labelled tokens)
    mine = examples[rank::world]
    with torch.no_grad():
        for s in range(0, len(mine), batch_size):
            ids, targets = pad(mine[s:s + batch_size], pad_id, device)
            total += torch.tensor([loss(ids, targets).item(), (targets != IGNORE).sum().item()], dtype=torch.float64)
    total = _all_sum(total, world)
    return (total[0] / total[1].clamp(min=1)).item()


def learning_rate(step, steps, lr, schedule="constant", warmup_steps=0) -> float:
    """The learning rate of ``step`` (0-based) of ``steps``: ``lr`` throughout ("constant"), or a
    linear warm-up over ``warmup_steps`` and then half a cosine from ``lr`` down to 0 ("cosine",
    the usual fine-tuning schedule: big steps while the adapters are far off, small ones at the end)."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown learning-rate schedule {schedule!r}: 'constant' or 'cosine'")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    done = (step - warmup_steps) / max(steps - warmup_steps, 1)  # 0 -> 1 over the steps after warm-up
    return lr * 0.5 * (1 + math.cos(math.pi * done))


def train(model, tokenizer, examples, out, steps=50, batch_size=4, lr=1e-3, seed=0, eval_examples=None,
          resume=None, progress=True, extra_log=None, schedule="constant", warmup_steps=0):
    """Train the model's LoRA adapters for ``steps`` global batches; write the adapter,
    ``train_state.pt`` (to resume) and ``train_log.json`` into ``out``. Returns the log.

    ``schedule`` / ``warmup_steps``: see ``learning_rate``. The cosine spans ``steps``: a resumed
    run takes, from where it starts, the rates of one run of ``steps`` (the log lists them)."""
    learning_rate(0, steps, lr, schedule, warmup_steps)  # check the schedule's name before any work
    rank, world = distributed()
    if batch_size % world:
        raise ValueError(f"the batch size {batch_size} must be a multiple of the {world} processes (each takes an "
                         "equal share of every global batch)")
    state = None
    if resume is not None:  # the adapters and the optimiser's moments where that run stopped
        state = torch.load(Path(resume) / "train_state.pt", weights_only=False)
        if state["log"]["batch_size"] != batch_size or state["log"]["seed"] != seed:
            raise ValueError(f"--resume {resume}: that run used batch size {state['log']['batch_size']} and seed "
                             f"{state['log']['seed']}; pass the same to continue it")
        load_adapter(model, resume)
    params = trainable_parameters(model)
    if not params:
        raise ValueError("the model has nothing to train: add adapters first (lora.add_lora)")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    log = {"world_size": world, "steps": 0, "batch_size": batch_size, "lr": lr, "schedule": schedule,
           "warmup_steps": warmup_steps, "seed": seed, "losses": [], "learning_rates": [],
           "tokens": [], "seconds": 0.0, **(extra_log or {})}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        log = {**state["log"], "world_size": world, "lr": lr, "schedule": schedule, "warmup_steps": warmup_steps}
    device = params[0].device
    step_loss = SummedLoss(model)
    if world > 1:
        step_loss = nn.parallel.DistributedDataParallel(step_loss, broadcast_buffers=False)
    model.train()
    bar = tqdm(total=steps, initial=log["steps"], desc="fine-tuning", unit="step", disable=not progress or rank > 0,
               file=sys.stderr)
    for step in range(log["steps"], steps):
        start = time.perf_counter()
        batch = global_batch(examples, batch_size, seed, step)
        labelled = sum(e.labelled for e in batch)  # the global batch's: every process knows it
        ids, targets = pad(batch[rank::world], tokenizer.pad_id, device)
        loss = step_loss(ids, targets) * (world / max(labelled, 1))  # DDP averages: × world gives the sum
        optimizer.zero_grad(set_to_none=True)
        rate = learning_rate(step, steps, lr, schedule, warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = rate
        loss.backward()
        optimizer.step()
        global_loss = _all_sum(loss.detach().double() / world, world).item()
        tokens = sum(len(e.ids) for e in batch)
        log["losses"].append(global_loss)
        log.setdefault("learning_rates", []).append(rate)
        log["tokens"].append(tokens)
        log["seconds"] += time.perf_counter() - start
        log["steps"] = step + 1
        if not math.isfinite(global_loss):
            raise FloatingPointError(f"step {step + 1}: the loss is {global_loss}; lower --lr")
        bar.set_postfix(loss=f"{global_loss:.3f}", tok_s=f"{sum(log['tokens']) / log['seconds']:.0f}")
        bar.update()
    bar.close()
    model.eval()
    log["tokens_per_second"] = sum(log["tokens"]) / max(log["seconds"], 1e-9)
    if eval_examples:
        log["eval_loss"] = evaluate(model, eval_examples, tokenizer.pad_id, batch_size, rank, world)
    if rank == 0:
        out = Path(out)
        save_adapter(model, out)
        torch.save({"optimizer": optimizer.state_dict(), "log": log}, out / "train_state.pt")
        (out / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")
    if world > 1:
        dist.barrier()
    return log
