"""Export a training workdir's policy as a Hugging Face directory:
``python -m o1jax.export --workdir DIR [--step N] --out OUT`` (config.json, model.safetensors,
tokenizer files; loads in transformers and vLLM)."""

from __future__ import annotations

import argparse
import sys

from o1jax.models import hf
from o1jax.workdir import load_policy


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m o1jax.export", description=__doc__)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--step", type=int, default=None, help="default: the latest checkpoint")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        model, params, tokenizer = load_policy(args.workdir, args.step)
        hf.save_pretrained(args.out, params, model.cfg, tokenizer)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
