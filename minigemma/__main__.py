"""Command line: ``python -m minigemma generate "PROMPT" [options]`` and ``python -m minigemma chat
[--system TEXT] [--thinking] [options]`` (an interactive chat: type a message, the model answers in
the conversation format of its family; an empty line or Ctrl-D ends). Both take the same options:
the model, ``--max-new-tokens``, the sampling options (``sampling.py``) and the speed options
(``--quantize``, ``--pack``, ``--threads``), with the Python API's defaults; ``--help`` shows them.
``--adapter DIR`` adds a LoRA adapter (``lora.py``) to the loaded model.
``python -m minigemma finetune --model SOURCE --data FILE.jsonl --out DIR ...`` trains one
(``finetune.py``; under ``torchrun --nproc_per_node K`` on K processes).
Options are checked before the model is loaded."""

import argparse
import sys
from pathlib import Path

import torch

from .chat import ChatFormatError, chat
from .finetune import distributed, prepare, train
from .generate import generate
from .lora import add_lora, load_adapter
from .sampling import Sampling
from .weights import family_of, load


def _common_options():
    """The options both subcommands take, with one set of defaults (the Python API's)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default="gemma3-270m",
                        help="'gemma3-270m' (a base model: it continues text, it was not tuned to follow chats), "
                             "a .gguf file or a Hugging Face model directory")
    common.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate at most")
    sampling = common.add_argument_group("sampling (sampling.py)")
    sampling.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    sampling.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens")
    sampling.add_argument("--top-p", type=float, default=None, help="keep the smallest set reaching probability p")
    sampling.add_argument("--min-p", type=float, default=None, help="keep tokens at least min-p times the best's")
    sampling.add_argument("--seed", type=int, default=None, help="for reproducible sampling")
    speed = common.add_argument_group("speed (swaps after loading: quantize.py, pack.py)")
    speed.add_argument("--quantize", choices=("int8", "int4", "int4-all"), default=None,
                       help="weight-only quantisation, run with bf16 activations")
    speed.add_argument("--pack", action="store_true", help="bf16 weights packed for oneDNN's kernel")
    speed.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    common.add_argument("--adapter", default=None, metavar="DIR",
                        help="a LoRA adapter directory (PEFT format, e.g. from `finetune`) to apply to the model")
    return common


def _finetune_parser(sub, formatter):
    f = sub.add_parser("finetune", formatter_class=formatter, help="train a LoRA adapter on a JSONL data set",
                       description="Train LoRA adapters (lora.py) on a JSONL data set (sft.py): one "
                                   '{"messages": [...], "tools": [...]} or {"text": ...} per line. Runs under '
                                   "torchrun --nproc_per_node K as K data-parallel processes.")
    f.add_argument("--model", default="gemma3-270m", help="'gemma3-270m', a .gguf file or a Hugging Face directory")
    f.add_argument("--data", required=True, help="the training set (JSONL)")
    f.add_argument("--out", required=True, help="where the adapter, train_log.json and train_state.pt go")
    f.add_argument("--eval", default=None, help="a held-out JSONL set: its loss is measured at the end")
    f.add_argument("--steps", type=int, default=50, help="optimiser steps (global batches)")
    f.add_argument("--batch-size", type=int, default=4, help="examples per global batch (over all processes)")
    f.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (peak, no weight decay)")
    f.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="learning rate over the run: constant, or a cosine from --lr down to 0")
    f.add_argument("--warmup-steps", type=int, default=0, help="steps of linear warm-up from 0 to --lr")
    f.add_argument("--lora-r", type=int, default=8, help="adapter rank")
    f.add_argument("--lora-alpha", type=float, default=16, help="adapter scale alpha (the update is alpha/r · B A)")
    f.add_argument("--lora-dropout", type=float, default=0.0, help="dropout on the adapters' input")
    f.add_argument("--max-length", type=int, default=1024, help="longer examples are cut (with a warning)")
    f.add_argument("--seed", type=int, default=0, help="adapter init and data order")
    f.add_argument("--quantize", choices=("int8", "int4"), default=None,
                   help="QLoRA: a frozen int8/int4 base (bf16 activations) under float32 adapters")
    f.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute each layer in the backward pass: less memory, about a third more time")
    f.add_argument("--resume", default=None, metavar="DIR", help="continue the run saved in DIR up to --steps")
    f.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")


def main(argv=None):
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m minigemma", description="Gemma, built from scratch.")
    sub = parser.add_subparsers(dest="command", required=True)
    common = _common_options()
    g = sub.add_parser("generate", parents=[common], formatter_class=formatter,
                       help="continue a prompt, streaming the text to stdout")
    g.add_argument("prompt")
    c = sub.add_parser("chat", parents=[common], formatter_class=formatter, help="an interactive chat in the terminal")
    c.add_argument("--system", default=None, help="a system message")
    c.add_argument("--thinking", action="store_true", help="switch thinking on (Gemma 4 models only)")
    _finetune_parser(sub, formatter)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "finetune":
        return _finetune(args)
    try:
        sampling = Sampling(args.temperature, args.top_k, args.top_p, args.min_p, args.seed)
        if args.command == "chat" and args.thinking and family_of(args.model) != "gemma4":
            raise ValueError(f"--thinking needs a Gemma 4 model: {args.model} is a Gemma 3 model, whose chat "
                             "format has no thinking switch")
    except (ValueError, FileNotFoundError) as e:  # checked before anything is loaded
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "chat":
        return _chat(args, sampling)
    try:
        model, tokenizer = _load(args)
        print(args.prompt, end="", flush=True)
        generate(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens, sampling=sampling,
                 stream=lambda piece: print(piece, end="", flush=True))
        print()
    except (ValueError, FileNotFoundError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    return 0


def _load(args):
    model, tokenizer = load(args.model, quantize=args.quantize, pack=args.pack)
    if args.adapter:
        load_adapter(model, args.adapter)
    return model, tokenizer


def _finetune(args):
    for name in ("steps", "batch_size", "lora_r", "max_length"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    for path in (args.data, args.eval, args.resume):
        if path is not None and not Path(path).exists():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    rank, world = distributed()
    try:
        model, tokenizer = load(args.model, quantize=args.quantize, progress=rank == 0)
        examples = prepare(tokenizer, args.data, args.max_length)
        held_out = prepare(tokenizer, args.eval, args.max_length) if args.eval else None
        if args.resume is None:
            add_lora(model, r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout, seed=args.seed)
        if args.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        log = train(model, tokenizer, examples, args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    seed=args.seed, eval_examples=held_out, resume=args.resume, schedule=args.schedule,
                    warmup_steps=args.warmup_steps,
                    extra_log={"model": args.model, "data": args.data, "examples": len(examples),
                               "truncated": sum(e.truncated for e in examples), "quantize": args.quantize,
                               "gradient_checkpointing": args.gradient_checkpointing})
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if rank == 0:
        extra = f", eval loss {log['eval_loss']:.3f}" if "eval_loss" in log else ""
        print(f"minigemma finetune: {log['steps']} steps, loss {log['losses'][0]:.3f} -> {log['losses'][-1]:.3f}"
              f"{extra}, {log['tokens_per_second']:.0f} tokens/s; adapter in {args.out}", file=sys.stderr)
    return 0


def _chat(args, sampling):
    print(f"minigemma chat: loading {args.model} ...", file=sys.stderr, flush=True)
    try:
        model, tokenizer = _load(args)  # progress bar on stderr
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.adapter:
        print(f"minigemma chat: with the LoRA adapter {args.adapter} (it answers what it was trained on: the "
              "course's adapter data/tool_calls/adapter was trained on tool calls only)", file=sys.stderr)
    elif args.model == "gemma3-270m":
        print("minigemma chat: Gemma 3 270M is a small *base* model: it continues the conversation's text and "
              "often rambles or repeats until --max-new-tokens; a Gemma 4 -it checkpoint answers.",
              file=sys.stderr)
    print("minigemma chat: type a message; an empty line or Ctrl-D ends.", file=sys.stderr, flush=True)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    shown = {"thought": "\x1b[2m", "text": ""}  # thoughts dimmed

    def show(kind, value):
        if kind == "tool_call":
            print(f"[tool call] {value['name']}({value['arguments']})", flush=True)
        else:
            print(f"{shown[kind]}{value}\x1b[0m" if shown[kind] else value, end="", flush=True)

    while True:
        try:
            line = input("you> ")
        except EOFError:
            print()
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        print("model> ", end="", flush=True)
        try:
            reply = chat(model, tokenizer, messages, thinking=args.thinking, max_new_tokens=args.max_new_tokens,
                         sampling=sampling, on_event=show)
        except (ChatFormatError, ValueError) as e:
            print(f"\nerror: {e}", file=sys.stderr)
            return 2
        print()
        messages.append(reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
