"""Command line: ``python -m minigemma generate "PROMPT" [options]`` and ``python -m minigemma chat
[--system TEXT] [--thinking] [options]`` (an interactive chat: type a message, the model answers in
the conversation format of its family; an empty line or Ctrl-D ends). Both take the same options:
the model, ``--max-new-tokens``, the sampling options (``sampling.py``) and the speed options
(``--quantize``, ``--pack``, ``--threads``), with the Python API's defaults; ``--help`` shows them.
Options are checked before the model is loaded."""

import argparse
import sys

import torch

from .chat import ChatFormatError, chat
from .generate import generate
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
    return common


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
    args = parser.parse_args(argv)
    try:
        sampling = Sampling(args.temperature, args.top_k, args.top_p, args.min_p, args.seed)
        if args.command == "chat" and args.thinking and family_of(args.model) != "gemma4":
            raise ValueError(f"--thinking needs a Gemma 4 model: {args.model} is a Gemma 3 model, whose chat "
                             "format has no thinking switch")
    except (ValueError, FileNotFoundError) as e:  # checked before anything is loaded
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "chat":
        return _chat(args, sampling)
    try:
        model, tokenizer = load(args.model, quantize=args.quantize, pack=args.pack)
        print(args.prompt, end="", flush=True)
        generate(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens, sampling=sampling,
                 stream=lambda piece: print(piece, end="", flush=True))
        print()
    except (ValueError, FileNotFoundError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    return 0


def _chat(args, sampling):
    print(f"minigemma chat: loading {args.model} ...", file=sys.stderr, flush=True)
    try:
        model, tokenizer = load(args.model, quantize=args.quantize, pack=args.pack)  # progress bar on stderr
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.model == "gemma3-270m":
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
