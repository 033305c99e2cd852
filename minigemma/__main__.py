"""Command line: ``python -m minigemma generate "PROMPT" [--model SOURCE] [--max-new-tokens N] ...``"""

import argparse
import sys

import torch


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
    args = parser.parse_args(argv)

    from . import generate, load

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, tokenizer = load(args.model)
        print(args.prompt, end="", flush=True)
        generate(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                 top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                 stream=lambda piece: print(piece, end="", flush=True))
        print()
    except (ValueError, FileNotFoundError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
