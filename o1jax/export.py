"""Export a training workdir's policy as a Hugging Face directory:
``python -m o1jax.export --workdir DIR [--step N] --out OUT`` (config.json, model.safetensors,
the tokenizer the run trained with; loads in transformers and vLLM). Only the policy's
parameters are read, sharded over ``--mesh-shape`` (default: one device). Run on every host of a
multi-host job (``--coordinator-address --num-processes --process-id``), each process reads its
shards and process 0 writes OUT.

A run whose RL trained LoRA adapters (``rl.lora_rank``) exports them merged into full weights;
with ``--peft`` it writes OUT/base (its base as a Hugging Face directory) and OUT/adapter (a PEFT
adapter directory over it: ``PeftModel.from_pretrained(base_model, OUT/adapter)``)."""

from __future__ import annotations

import argparse
import os
import sys

from o1jax import sharding
from o1jax.models import hf
from o1jax.models.hf import adapters as hf_adapters
from o1jax.policy import command_mesh, from_workdir, load_policy, restore_lora
from o1jax.workdir import is_writer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m o1jax.export", description=__doc__)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--step", type=int, default=None, help="default: the latest checkpoint")
    ap.add_argument("--out", required=True)
    ap.add_argument("--mesh-shape", default=None,
                    help="data,fsdp,tensor the parameters are sharded over while read, e.g. "
                    "1,-1,1 (default: one device)")
    ap.add_argument("--peft", action="store_true",
                    help="a LoRA run: its base and a PEFT adapter directory, not merged weights")
    sharding.add_distributed_flags(ap)
    args = ap.parse_args(argv)
    try:
        sharding.initialize_from_flags(args)
        mesh = command_mesh(args.mesh_shape)
        if args.peft:
            model, tokenizer, _ = from_workdir(args.workdir, mesh)
            base, adapters, lc = restore_lora(args.workdir, model, args.step)
            if is_writer():
                base_dir = os.path.join(args.out, "base")
                hf.save_pretrained(base_dir, base, model.cfg, tokenizer)
                hf_adapters.save_peft(os.path.join(args.out, "adapter"), adapters, lc,
                                      model.cfg, os.path.abspath(base_dir))
                print(args.out)
            return 0
        (model, tokenizer, _), params = load_policy(args.workdir, args.step, mesh)
        if is_writer():
            hf.save_pretrained(args.out, params, model.cfg, tokenizer)
            print(args.out)
    except (ValueError, FileExistsError, FileNotFoundError, sharding.DistributedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
