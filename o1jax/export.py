"""Export a training workdir's policy as a Hugging Face directory:
``python -m o1jax.export --workdir DIR [--step N] --out OUT`` (config.json, model.safetensors,
the tokenizer the run trained with; loads in transformers and vLLM). Only the policy's
parameters are read, sharded over ``--mesh-shape`` (default: one device). Run on every host of a
multi-host job (``--coordinator-address --num-processes --process-id``), each process reads its
shards and process 0 writes OUT."""

from __future__ import annotations

import argparse
import sys

from o1jax import sharding
from o1jax.models import hf
from o1jax.policy import command_mesh, load_policy
from o1jax.workdir import is_writer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m o1jax.export", description=__doc__)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--step", type=int, default=None, help="default: the latest checkpoint")
    ap.add_argument("--out", required=True)
    ap.add_argument("--mesh-shape", default=None,
                    help="data,fsdp,tensor the parameters are sharded over while read, e.g. "
                    "1,-1,1 (default: one device)")
    sharding.add_distributed_flags(ap)
    args = ap.parse_args(argv)
    try:
        sharding.initialize_from_flags(args)
        (model, tokenizer, _), params = load_policy(args.workdir, args.step,
                                                    command_mesh(args.mesh_shape))
        if is_writer():
            hf.save_pretrained(args.out, params, model.cfg, tokenizer)
            print(args.out)
    except (ValueError, FileExistsError, FileNotFoundError, sharding.DistributedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
