"""Command line: ``python -m minigemma generate "PROMPT" [--model SOURCE] [--max-new-tokens N] ...``
and ``python -m minigemma chat [--system TEXT] [--thinking] ...`` (an interactive chat: type a
message, the model answers in the conversation format of its family; an empty line or Ctrl-D ends).
Both take ``--quantize int8|int4|int4-all`` or ``--pack`` for faster decoding."""

import argparse
import sys

import torch

from .chat import ChatFormatError, chat
from .generate import generate
from .weights import load


def _speed_options(parser):
    """The load options that trade memory or exactness for speed (see README, "Faster decoding")."""
    parser.add_argument("--quantize", choices=("int8", "int4", "int4-all"), default=None,
                        help="weight-only quantisation, run with bf16 activations (quantize.py)")
    parser.add_argument("--pack", action="store_true", help="bf16 weights packed for oneDNN's kernel (pack.py)")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minigemma", description="Gemma, built from scratch.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="continue a prompt, streaming the text to stdout")
    g.add_argument("prompt")
    g.add_argument("--model", default="gemma3-270m",
                   help="'gemma3-270m' (default), a .gguf file or a Hugging Face model directory")
    g.add_argument("--max-new-tokens", type=int, default=48)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    _speed_options(g)
    c = sub.add_parser("chat", help="an interactive chat in the terminal")
    c.add_argument("--model", default="gemma3-270m",
                   help="'gemma3-270m' (default; a base model: it continues chats, it was not tuned for them)")
    c.add_argument("--system", default=None, help="a system message")
    c.add_argument("--thinking", action="store_true", help="switch thinking on (Gemma 4 format only)")
    c.add_argument("--max-new-tokens", type=int, default=96)
    c.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    c.add_argument("--top-p", type=float, default=None)
    c.add_argument("--min-p", type=float, default=None)
    c.add_argument("--seed", type=int, default=None)
    c.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    _speed_options(c)
    args = parser.parse_args(argv)
    if args.command == "chat":
        return _chat(args)

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, tokenizer = load(args.model, quantize=args.quantize, pack=args.pack)
        print(args.prompt, end="", flush=True)
        generate(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                 top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                 stream=lambda piece: print(piece, end="", flush=True))
        print()
    except (ValueError, FileNotFoundError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    return 0


def _chat(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, tokenizer = load(args.model, progress=False, quantize=args.quantize, pack=args.pack)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
                         temperature=args.temperature, top_p=args.top_p, min_p=args.min_p, seed=args.seed,
                         on_event=show)
        except (ChatFormatError, ValueError) as e:
            print(f"\nerror: {e}", file=sys.stderr)
            return 2
        print()
        messages.append(reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
