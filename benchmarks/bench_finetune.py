"""LoRA fine-tuning: minigemma vs transformers + peft on the same Gemma 3 270M weights, in one run.

    python benchmarks/bench_finetune.py [--threads 2 [1 ...]] [--rounds 3] [--steps 2] [--memory-threads N]
                                        [--memory-steps 1] [--memory-settings NAME ...] [--skip-speed] [--skip-memory]

1. Speed: one training step (forward, backward, AdamW) at batch 4 × 128 tokens, float32, LoRA
   r=8, alpha=16 on q/k/v/o/gate/up/down, dropout 0. minigemma is ``add_lora`` + ``SummedLoss``
   (the head only on labelled positions); transformers + peft is ``get_peft_model`` with the same
   ``LoraConfig`` and ``model(input_ids, labels=...).loss`` (logits everywhere), as people use it.
   Two label settings: every position labelled (plain LM), and only each row's last 32 positions
   (a chat's model turn). transformers' own way to skip the head, ``logits_to_keep`` with labels
   cut to the same suffix, is timed too: it works only when the labelled positions are the same
   suffix in every row; and minigemma with gradient checkpointing, for its cost in time. Warm-up,
   then best of ``--rounds`` interleaved rounds of ``--steps`` steps; several ``--threads`` counts are
   interleaved too (on a busy machine one thread can beat two: see the results).
2. Memory: one training step at batch 4 × 400 tokens, last 40 positions labelled, each setting in
   a fresh process: resident memory after loading; the peak during the step (VmHWM, the memory
   map's high-water mark, reset after loading through /proc/self/clear_refs, as loading peaks
   higher than training for int8; not ``ru_maxrss``, which also keeps the parent's resident memory
   from the fork, and clear_refs does not reset that); their difference (the step's own memory);
   what autograd saved for the backward pass; the step's wall-clock and CPU time. Settings:
   minigemma float32, with gradient checkpointing, over int8 weights (QLoRA: bf16 activations,
   load's default; and float32 ones), int8 with checkpointing; transformers + peft float32, with
   its checkpointing, with ``logits_to_keep``.
The results go to ``benchmarks/results_finetune.md`` and the raw numbers to ``results_finetune.json``.
Ratios above 1 mean minigemma is faster. Not a test: timings depend on the machine.
"""

import argparse
import ctypes
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import minigemma
from minigemma.finetune import SummedLoss
from minigemma.lora import TARGETS, add_lora, trainable_parameters
from minigemma.sft import IGNORE
from minigemma.weights import resolve

ROOT = Path(__file__).resolve().parents[1]
R, ALPHA, LR = 8, 16, 1e-4
MEMORY = {  # name -> (program, quantize, activations' dtype, checkpointing, logits_to_keep)
    "minigemma float32": ("minigemma", None, torch.float32, False, False),
    "minigemma float32 + checkpointing": ("minigemma", None, torch.float32, True, False),
    "minigemma int8 base, bf16 activations (QLoRA)": ("minigemma", "int8", torch.bfloat16, False, False),
    "minigemma int8 base, bf16 + checkpointing": ("minigemma", "int8", torch.bfloat16, True, False),
    "minigemma int8 base, float32 activations": ("minigemma", "int8", torch.float32, False, False),
    "transformers+peft float32": ("transformers", None, torch.float32, False, False),
    "transformers+peft float32 + checkpointing": ("transformers", None, torch.float32, True, False),
    "transformers+peft float32, logits_to_keep": ("transformers", None, torch.float32, False, True),
}


def batch(tok, B, T, last=None):
    """(B, T) ids of the sample text (repeated), their labels the transformers way (unshifted, -100
    where unlabelled) and the same as minigemma's targets (shifted: position t predicts t + 1)."""
    text = tok.encode((ROOT / "data" / "sample_text.txt").read_text(), add_bos=True)
    stream = (text * (B * T // len(text) + 1))[:B * T]
    ids = torch.tensor(stream).view(B, T)  # (B, T)
    labels = ids.clone()
    if last is not None:
        labels[:, :T - last] = IGNORE  # only the last `last` tokens are predicted
    targets = torch.full_like(ids, IGNORE)
    targets[:, :-1] = labels[:, 1:]  # (B, T): what each position predicts
    return ids, labels, targets


def load_ours(quantize=None, dtype=torch.float32, checkpointing=False):
    model, tok = minigemma.load("gemma3-270m", dtype=dtype, quantize=quantize, progress=False)
    add_lora(model, r=R, alpha=ALPHA, target_modules=TARGETS, dropout=0.0)
    if checkpointing:
        model.gradient_checkpointing_enable()
    return model.train(), tok


def load_theirs(checkpointing=False):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = resolve("gemma3-270m")
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    if checkpointing:  # transformers 5 renamed gradient_checkpointing_enable (now a deprecated alias)
        (getattr(hf, "activation_checkpointing_enable", None) or hf.gradient_checkpointing_enable)()
    config = LoraConfig(r=R, lora_alpha=ALPHA, target_modules=list(TARGETS), lora_dropout=0.0)
    return get_peft_model(hf, config).train()


def adamw_step(opt, loss):
    """One optimiser step on ``loss()`` -> the loss's value."""
    opt.zero_grad(set_to_none=True)
    value = loss()
    value.backward()
    opt.step()
    return value.item()


def ours_step(model, ids, targets, checkpointing=None):
    """One step of minigemma: the head on labelled positions only. -> (step function, loss function).
    ``checkpointing``: True/False switches gradient checkpointing on/off for this step function's
    steps (several share one model); None leaves the model as it is."""
    loss_fn, n = SummedLoss(model), (targets != IGNORE).sum()
    opt = torch.optim.AdamW(trainable_parameters(model), lr=LR, weight_decay=0.0)

    def loss():
        return loss_fn(ids, targets) / n

    def step():
        if checkpointing is not None:
            (model.gradient_checkpointing_enable if checkpointing else model.gradient_checkpointing_disable)()
        return adamw_step(opt, loss)
    return step, loss


def theirs_step(model, ids, labels, keep=None):
    """One step of transformers + peft: ``model(ids, labels=...)``, logits for every position, or,
    with ``keep``, for the last ``keep`` positions only (``logits_to_keep``, labels cut to match)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)

    def loss():
        if keep is None:
            return model(input_ids=ids, labels=labels, use_cache=False).loss
        return model(input_ids=ids, labels=labels[:, -keep:], logits_to_keep=keep, use_cache=False).loss

    return lambda: adamw_step(opt, loss), loss


def head_share(model, T, labelled):
    """Multiply-adds per sequence: (body, head) -- the frozen linear layers and attention of the
    decoder, and the tied 262,144-row head on the labelled positions."""
    cfg = model.config
    body = sum(p.numel() for n, p in model.layers.named_parameters() if p.dim() == 2 and "lora_" not in n) * T
    attn = sum(2 * cfg.num_attention_heads * cfg.head_dim * T * min(T, cfg.sliding_window if t == "sliding_attention"
               else T) / 2 for t in cfg.layer_types)  # QKᵀ and PV, causal: half the square
    return body + attn, cfg.vocab_size * cfg.hidden_size * labelled


def speed(args):
    B, T, last = 4, 128, 32
    model, tok = load_ours()
    hf = load_theirs()
    runs = {}  # (program, labels) -> (step function, loss function)
    for setting, k in (("every position labelled", None), (f"last {last} positions labelled", last)):
        ids, labels, targets = batch(tok, B, T, k)
        runs[("minigemma", setting)] = ours_step(model, ids, targets, checkpointing=False)
        runs[("transformers+peft", setting)] = theirs_step(hf, ids, labels)
        if k is not None:
            runs[("transformers+peft, logits_to_keep", setting)] = theirs_step(hf, ids, labels, keep=k + 1)
            runs[("minigemma + checkpointing", setting)] = ours_step(model, ids, targets, checkpointing=True)
    with torch.no_grad():  # the same loss before training: the programs compute the same thing
        losses = {f"{who} / {setting}": fn[1]().item() for (who, setting), fn in runs.items()}
    print("losses at the start:", json.dumps(losses, indent=1), flush=True)
    keys = [(n, who, setting) for n in args.threads for who, setting in runs]
    for n, who, setting in keys:
        torch.set_num_threads(n)
        runs[(who, setting)][0]()  # warm-up
    times, cpu = {key: [] for key in keys}, {key: [] for key in keys}
    for r in range(args.rounds):  # interleaved: drift of the shared machine hits every program alike
        for n, who, setting in keys:
            torch.set_num_threads(n)
            step = runs[(who, setting)][0]
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                step()
            times[(n, who, setting)].append((time.perf_counter() - start) / args.steps)
            cpu[(n, who, setting)].append((time.process_time() - start_cpu) / args.steps)
            print(f"round {r + 1}, {n} threads, {who}, {setting}: {times[(n, who, setting)][-1]:.2f} s/step "
                  f"({cpu[(n, who, setting)][-1]:.2f} CPU s)", flush=True)
    body, head = head_share(model, T, T - 1)
    rows = [{"threads": n, "program": who, "labels": setting, "seconds_per_step": times[(n, who, setting)],
             "cpu_seconds_per_step": cpu[(n, who, setting)]} for n, who, setting in keys]
    return {"batch": [B, T], "last": last, "rounds": args.rounds, "steps": args.steps, "losses": losses,
            "rows": rows, "multiply_adds_per_sequence": {"body": body, "head_all": head,
                                                         "head_last": head * last // (T - 1)}}


def rss(field="VmRSS"):
    """Bytes of this process's resident memory now (VmRSS) or at its peak (VmHWM)."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status[field].split()[0]) * 1024


class SavedTensors:
    """Counts what autograd keeps for the backward pass (each storage once): all of it, and the
    floating tensors that need no gradient and are not the model's own parameters -- for a
    quantised model chiefly the dequantised weight blocks that ``x @ w.T`` saves."""

    def __init__(self, model):
        self.own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        self.seen, self.total, self.frozen_copies = set(), 0, 0
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    def pack(self, t):
        key = t.untyped_storage().data_ptr()
        if key not in self.seen and key not in self.own:
            self.seen.add(key)
            self.total += t.untyped_storage().nbytes()
            if t.is_floating_point() and not t.requires_grad:
                self.frozen_copies += t.untyped_storage().nbytes()
        return t


def memory_one(name, threads, steps):
    """In a fresh process: load one setting, take ``steps`` training steps; print a JSON line."""
    torch.set_num_threads(threads)
    program, quantize, dtype, checkpointing, keep = MEMORY[name]
    B, T, last = 4, 400, 40
    if program == "minigemma":
        model, tok = load_ours(quantize, dtype, checkpointing)
        step, _ = ours_step(model, *batch(tok, B, T, last)[::2])
    else:
        ids, labels, _ = batch(minigemma.Tokenizer.from_file(resolve("gemma3-270m")), B, T, last)
        model = load_theirs(checkpointing)
        step, _ = theirs_step(model, ids, labels, keep=last + 1 if keep else None)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # return what loading freed, so it is not counted as held
    loaded = rss()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (loading's is higher for int8)
    seconds, cpu, losses, saved = [], [], [], SavedTensors(model)
    for i in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        if i == 0:
            with saved.hooks:
                losses.append(step())
        else:
            losses.append(step())
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        # every adapter got a gradient (through the recomputation too, with checkpointing)
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    peak = rss("VmHWM")  # not ru_maxrss: it keeps the parent's RSS from the fork, which clear_refs leaves
    print(json.dumps({"name": name, "loaded": loaded, "peak": peak, "seconds": seconds, "cpu_seconds": cpu,
                      "losses": losses, "saved": saved.total, "saved_frozen_copies": saved.frozen_copies}))


def memory(args):
    rows = []
    for name in args.memory_settings:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--memory-threads", str(args.memory_threads),
                              "--memory-steps", str(args.memory_steps)],
                             capture_output=True, text=True)
        if out.returncode:
            print(f"{name}: failed\n{out.stderr[-3000:]}", flush=True)
            rows.append({"name": name, "error": out.stderr.strip().splitlines()[-1]})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{name}: loaded {r['loaded'] / 1e6:,.0f} MB, peak {r['peak'] / 1e6:,.0f} MB, step(s) "
              + ", ".join(f"{w:.1f} s ({c:.1f} CPU s)" for w, c in zip(r["seconds"], r["cpu_seconds"])), flush=True)
    return rows


def speed_table(s):
    B, T = s["batch"]
    tps = {(r["threads"], r["program"], r["labels"]): B * T / min(r["seconds_per_step"]) for r in s["rows"]}
    lines = [f"### Step speed: batch {B} × {T} tokens, float32", "",
             f"Tokens/s = {B * T} input tokens ÷ the time of one step (forward, backward, AdamW), best of "
             f"{s['rounds']} interleaved rounds of {s['steps']} steps after a warm-up step; ratios > 1: minigemma "
             "faster. Every program starts from the same loss (checked before timing).", "",
             "| threads | labels | minigemma | transformers+peft | minigemma ÷ transformers+peft | transformers+peft, "
             "logits_to_keep | minigemma ÷ that | minigemma + checkpointing (cost) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for (n, who, setting), ours in tps.items():
        if who != "minigemma":
            continue
        theirs, keep, ckpt = (tps.get((n, w, setting)) for w in (
            "transformers+peft", "transformers+peft, logits_to_keep", "minigemma + checkpointing"))
        cells = [f"{n}", setting, f"{ours:,.1f}", f"{theirs:,.1f}", f"**{ours / theirs:.2f}×**",
                 f"{keep:,.1f}" if keep else "—", f"{ours / keep:.2f}×" if keep else "—",
                 f"{ckpt:,.1f} ({ours / ckpt - 1:+.0%} time)" if ckpt else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Every run (tokens/s best and worst round; CPU seconds per step, best round):", "",
              "| threads | labels | program | s/step (best) | tokens/s (best; worst) | CPU s/step |",
              "|---:|---|---|---:|---:|---:|"]
    for r in s["rows"]:
        t = r["seconds_per_step"]
        lines.append(f"| {r['threads']} | {r['labels']} | {r['program']} | {min(t):.2f} | {B * T / min(t):,.1f}; "
                     f"{B * T / max(t):,.1f} | {min(r['cpu_seconds_per_step']):.2f} |")
    return lines


def memory_table(rows, steps, threads):
    which = "the step" if steps == 1 else f"the last of {steps} steps"
    lines = [f"### Memory of one training step: batch 4 × 400 tokens, last 40 positions labelled, "
             f"{threads} thread(s)", "",
             "Each setting in a fresh process, one after another (not interleaved). Resident memory (RSS) after "
             f"loading and adding the adapters; the peak RSS during {steps} training step(s) (VmHWM, reset "
             "after loading); their difference, the step's own memory; what autograd kept from the forward pass for "
             "the backward pass (saved-tensor hooks, each storage once), and the part of it that is float tensors "
             "needing no gradient other than the model's parameters (for int8: dequantised weight blocks); the "
             f"wall-clock and CPU time of {which} (CPU time suffers less from the machine's other jobs; its ratio is "
             "against minigemma float32).", "",
             "| setting | RSS after loading (MB) | peak RSS in the step (MB) | step's own (MB) | saved for backward "
             "(MB) | of which no-grad copies (MB) | step (s, wall) | step (CPU s) | CPU time ÷ minigemma float32 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ref = next((r["cpu_seconds"][-1] for r in rows if r["name"] == "minigemma float32" and "error" not in r), None)
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error']} | | | | | | | |")
            continue
        rel = f"{r['cpu_seconds'][-1] / ref:.2f}×" if ref else "—"
        lines.append(f"| {r['name']} | {r['loaded'] / 1e6:,.0f} | {r['peak'] / 1e6:,.0f} | "
                     f"{(r['peak'] - r['loaded']) / 1e6:,.0f} | {r['saved'] / 1e6:,.0f} | "
                     f"{r['saved_frozen_copies'] / 1e6:,.0f} | {r['seconds'][-1]:.1f} | {r['cpu_seconds'][-1]:.1f} "
                     f"| {rel} |")
    return lines


def explain(result):
    """The paragraph under the tables, with this run's numbers."""
    out = ["### Where the time and the memory go", ""]
    s, mem = result.get("speed"), {r["name"]: r for r in result.get("memory", []) if "error" not in r}
    if s:
        B, T = s["batch"]
        m = s["multiply_adds_per_sequence"]
        per_pos = m["head_all"] / (T - 1)
        share = [h / (m["body"] + h) for h in (m["head_all"], m["head_last"])]
        tps = {(r["threads"], r["program"], r["labels"]): B * T / min(r["seconds_per_step"]) for r in s["rows"]}
        settings = list(dict.fromkeys(r["labels"] for r in s["rows"]))
        threads = list(dict.fromkeys(r["threads"] for r in s["rows"]))

        def ratio(n, setting, other):
            return tps[(n, "minigemma", setting)] / tps[(n, other, setting)]
        per = "; ".join(f"{n} thread(s): {ratio(n, settings[0], 'transformers+peft'):.2f}× and "
                        f"{ratio(n, settings[1], 'transformers+peft'):.2f}×" for n in threads)
        out.append(
            "* **The head.** Gemma's tied output head multiplies by the 262,144 × 640 embedding: "
            f"{per_pos / 1e6:.0f} M "
            f"multiply-adds per position, against {m['body'] / T / 1e6:.0f} M for all 18 layers (linear layers and "
            f"attention at {T} tokens). Frozen, it needs no weight gradient, only its input's, like the frozen layers, "
            f"so it is {share[0]:.0%} of a step's multiply-adds when every position is labelled, plus a log-softmax "
            f"over 262,144 entries per labelled position. With every position labelled both programs do the same "
            f"matrix products and the same loss; with the last {s['last']} of {T} labelled, minigemma runs the head on "
            f"{B * s['last']} rows instead of {B * T} ({share[1]:.0%} of the multiply-adds left to it). minigemma ÷ "
            f"transformers+peft, every position / last {s['last']} labelled: {per}. transformers gets the same "
            f"saving from `logits_to_keep={s['last'] + 1}` with the labels cut to the last {s['last'] + 1} positions "
            "(the `logits_to_keep` column), but only because here the labelled span is the same suffix of every row: "
            "the usual `model(input_ids, labels=labels)`, as the Trainer calls it, computes every "
            "position's logits, and padded chats of different lengths have their model turns at different offsets.")
        if len(threads) > 1:
            a, b = threads[0], threads[-1]
            slow = tps[(b, "minigemma", settings[0])] / tps[(a, "minigemma", settings[0])]
            load = result.get("load_average", [0])[0]
            out.append(
                f"* **Threads on a shared machine.** A {a}-thread step took {slow:.1f}× the time of a {b}-thread one "
                f"(minigemma, every position labelled). With the load average at {load:.1f} on "
                f"{os.cpu_count()} cores, each of a step's thousands of parallel operations waits at its end for "
                "whichever of our threads the scheduler has set aside; one thread never waits for another. So on "
                f"this busy machine the {b}-thread rows say more about the programs than the {a}-thread rows.")
        n = threads[-1]
        if (n, "minigemma + checkpointing", settings[1]) in tps:
            cost = tps[(n, "minigemma", settings[1])] / tps[(n, "minigemma + checkpointing", settings[1])] - 1
            out.append(f"* **Gradient checkpointing** runs each layer's forward pass again in the backward pass: "
                       f"{cost:+.0%} time per step at {B} × {T} ({n} thread(s), interleaved).")
    ours, ours_ck = mem.get("minigemma float32"), mem.get("minigemma float32 + checkpointing")
    hf, hf_ck = mem.get("transformers+peft float32"), mem.get("transformers+peft float32 + checkpointing")
    own = lambda r: (r["peak"] - r["loaded"]) / 1e6  # noqa: E731
    if ours and ours_ck:
        out.append("* **Activations.** At 4 × 400 a float32 step of minigemma keeps "
                   f"{ours['saved'] / 1e6:,.0f} MB for "
                   f"the backward pass (its own memory {own(ours):,.0f} MB); checkpointing keeps only each layer's "
                   f"input and the logits of the 160 labelled positions ({ours_ck['saved'] / 1e6:,.0f} MB), and its step "
                   f"needs {own(ours_ck):,.0f} MB.")
    if hf:
        text = (f"* **transformers' memory** is the logits: all 1,600 positions × 262,144 × 4 bytes = 1,678 MB in "
                "float32, and the loss makes more tensors that size (the log-softmax, its gradient, the logits' "
                f"gradient): its step needs {own(hf):,.0f} MB")
        if hf_ck:
            text += (f", and checkpointing, which leaves the head alone, only brings it to {own(hf_ck):,.0f} MB "
                     f"(autograd's saved tensors fall from {hf['saved'] / 1e6:,.0f} to {hf_ck['saved'] / 1e6:,.0f} MB)")
        keep = mem.get("transformers+peft float32, logits_to_keep")
        if keep:
            text += f"; with `logits_to_keep` it needs {own(keep):,.0f} MB"
        out.append(text + ".")
    q, q_ck, q32 = (mem.get(k) for k in ("minigemma int8 base, bf16 activations (QLoRA)",
                                         "minigemma int8 base, bf16 + checkpointing",
                                         "minigemma int8 base, float32 activations"))
    if q and ours:
        bf16 = "has" if result.get("cpu_bf16") else "has no"
        text = ("* **QLoRA (int8 base).** PyTorch's packed int8 kernel (`aten._weight_int8pack_mm`) has no backward "
                "pass, so with gradients on every quantised layer, the head included, takes the dequantised-block "
                "path of `quant_layers.py`: it dequantises 8,192 output rows at a time and multiplies in the "
                f"activations' dtype. Time: this CPU {bf16} bf16 instructions (AVX512-BF16/AMX), and a bf16 QLoRA step "
                f"takes {q['cpu_seconds'][-1] / ours['cpu_seconds'][-1]:.1f}× the CPU time of a float32 LoRA step")
        if q32:
            text += f"; int8 weights with float32 activations {q32['cpu_seconds'][-1] / ours['cpu_seconds'][-1]:.1f}×"
        text += (f". Memory: the int8 weights hold 270 MB instead of 1,072 MB, but `x @ w.T` saves `w` for the "
                 "gradient of `x`, so autograd keeps every dequantised block until the backward pass: "
                 f"{q['saved_frozen_copies'] / 1e6:,.0f} MB, a bf16 copy of all the weights")
        if q32:
            text += f" ({q32['saved_frozen_copies'] / 1e6:,.0f} MB in float32)"
        if q_ck:
            text += (f"; with checkpointing the layers' copies are rebuilt one layer at a time, but the head's stay "
                     f"({q_ck['saved_frozen_copies'] / 1e6:,.0f} MB), as the head runs outside the checkpointed "
                     "layers")
        out.append(text + ".")
    if mem:
        low = min(mem.values(), key=lambda r: r["peak"])
        out.append(f"* **Smallest peak:** {low['name']}, {low['peak'] / 1e6:,.0f} MB"
                   + (f" (minigemma float32: {ours['peak'] / 1e6:,.0f} MB)." if ours else "."))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[2],
                        help="torch threads; several counts are timed interleaved in the speed comparison")
    parser.add_argument("--memory-threads", type=int, help="threads of the memory runs (default: the first --threads)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the speed comparison")
    parser.add_argument("--steps", type=int, default=2, help="training steps per program per round")
    parser.add_argument("--memory-steps", type=int, default=1, help="training steps per memory setting")
    parser.add_argument("--memory-settings", nargs="+", default=list(MEMORY), choices=list(MEMORY), metavar="NAME",
                        help=f"which memory settings to run (default: all of {list(MEMORY)})")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_finetune.md"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.memory_threads = args.memory_threads or args.threads[0]
    if args.one:
        return memory_one(args.one, args.memory_threads, args.memory_steps)
    import peft
    import transformers

    start, load_start = time.perf_counter(), os.getloadavg()[0]
    result = {"date": time.strftime("%Y-%m-%d"), "threads": args.threads, "torch": torch.__version__,
              "transformers": transformers.__version__, "peft": peft.__version__,
              "cpu": cpu_name(), "cpu_bf16": cpu_has_bf16(),
              "lora": {"r": R, "alpha": ALPHA, "targets": list(TARGETS), "dropout": 0.0, "lr": LR}}
    lines = []
    if not args.skip_speed:
        result["speed"] = speed(args)
        lines += speed_table(result["speed"]) + [""]
    if not args.skip_memory:
        result["memory"] = memory(args)
        lines += memory_table(result["memory"], args.memory_steps, args.memory_threads) + [""]
    result["load_average"] = [load_start, os.getloadavg()[0]]
    lines += explain(result) + [""]
    result["seconds"] = time.perf_counter() - start
    shared = (f"The machine was shared with other jobs (load average {load_start:.1f} before the script started, "
              f"{result['load_average'][1]:.1f} at its end, on {os.cpu_count()} cores): compare the ratios, which "
              "come from interleaved runs, more than the absolute numbers. " if load_start > 0.5 * os.cpu_count()
              else f"Load average {load_start:.1f} before the script started. ")
    head = [f"Gemma 3 270M (Q4_K_M GGUF, dequantised), LoRA r={R}, alpha={ALPHA}, dropout 0 on "
            f"{', '.join(TARGETS)}; {'/'.join(map(str, args.threads))} threads, torch {torch.__version__}, "
            f"transformers {transformers.__version__}, peft {peft.__version__}, {result['cpu']}, measured "
            f"{result['date']}. " + shared + f"The script took {result['seconds'] / 60:.0f} min.", ""]
    table = "\n".join(head + lines)
    print(table)
    Path(args.out).write_text(table)
    Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")


def cpu_has_bf16():
    flags = Path("/proc/cpuinfo").read_text()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
