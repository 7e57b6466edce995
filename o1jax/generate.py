"""Sample completions from a model: ``python -m o1jax.generate --model PATH --prompt TEXT``.

PATH is a Hugging Face model directory (Llama, Qwen2 or Qwen2.5-VL with tokenizer.json) or a
training workdir (its latest checkpoint). A vision-language model reads ``--image FILE`` with
every prompt: the image is resized to the model's square size (``data.builders.load_image``:
alpha over white, RGB, bicubic) and its placeholder tokens go right after the prompt's first
(beginning-of-sequence) token, as training prompts have them (``data.pipeline.prompt_ids``).
With one prompt and
one sample the completion text alone is printed; with ``--prompts-file`` or ``--num-samples`` > 1
one JSON object per completion is printed: {"prompt", "completion", "finished"}.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import numpy as np

from o1jax import sharding, workdir
from o1jax.models import ModelConfig, hf
from o1jax.rollout import SamplingConfig, make_sampler, pad_prompts
from o1jax.tokenizer import Tokenizer, response_texts


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m o1jax.generate",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True,
                    help="Hugging Face model directory or o1jax training workdir")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="one prompt")
    src.add_argument("--prompts-file", help="a text file with one prompt per line")
    ap.add_argument("--image", help="an image file every prompt is asked about (vision-language "
                    "models only, which need one)")
    ap.add_argument("--image-size", type=int, default=None,
                    help="a Hugging Face vision-language model's square image size in pixels "
                    "(a multiple of its patch x merge size; default: o1jax.models.hf."
                    "QWEN_VL_IMAGE_SIZE); a workdir's policy reads the size it trained on")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--greedy", action="store_true", help="argmax decoding")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--num-samples", type=int, default=1, help="completions per prompt (G)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mesh-shape", default=None,
                    help="data,fsdp,tensor, e.g. 1,1,-1 (default: one device)")
    ap.add_argument("--dtype", default="float32", help="compute dtype (float32 or bfloat16)")
    sharding.add_distributed_flags(ap)
    return ap.parse_args(argv)


def prompt_inputs(prompts: list[str], image: str | None, cfg: ModelConfig, tokenizer: Tokenizer
                  ) -> tuple[list[list[int]], np.ndarray | None]:
    """Each prompt's token ids and, for a vision-language model, the image [B, S, S, 3] uint8
    (the same for every prompt) with its placeholders after each prompt's first token."""
    if cfg.vision is None:
        if image is not None:
            raise ValueError(f"--image {image}: this is a text-only model (no vision encoder)")
        return [tokenizer.encode(p) for p in prompts], None
    if image is None:
        raise ValueError("this vision-language model reads an image with every prompt: give "
                         "--image FILE")
    from o1jax.data.builders import load_image
    from o1jax.data.pipeline import prompt_ids
    pixels = load_image(image, cfg.vision.image_size, where=f"--image {image}")
    ids = [prompt_ids({"question": p, "image": pixels}, tokenizer, "{question}",
                      use_chat_template=False, image_tokens=cfg.image_tokens) for p in prompts]
    return ids, np.stack([pixels] * len(prompts))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.prompt is not None:
        prompts = [args.prompt]
    else:
        with open(args.prompts_file) as f:
            prompts = [line.rstrip("\n") for line in f if line.strip()]
    try:
        sharding.initialize_from_flags(args)
        if not prompts or not all(prompts):
            raise ValueError("empty prompt" if prompts else f"no prompts in {args.prompts_file}")
        if workdir.is_workdir(args.model):
            if args.image_size is not None:
                raise ValueError("--image-size is for Hugging Face models; a workdir's policy "
                                 "reads the image size it trained on")
            model, params, tokenizer = workdir.load_policy(args.model)
        else:
            tokenizer = Tokenizer.from_dir(args.model)
        cfg_sampling = SamplingConfig(
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
            top_k=args.top_k, greedy=args.greedy, num_samples=args.num_samples,
            stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id)
        mesh = None
        if args.mesh_shape:
            mesh = sharding.make_mesh([int(s) for s in args.mesh_shape.split(",")])
        if not workdir.is_workdir(args.model):
            vision = {} if args.image_size is None else {"vision": {"image_size": args.image_size}}
            model, params = hf.load(args.model, mesh=mesh, dtype=args.dtype, **vision)
        ids, images = prompt_inputs(prompts, args.image, model.cfg, tokenizer)
        tokens, mask = pad_prompts(ids, tokenizer.pad_id)
        sampler = make_sampler(model, cfg_sampling, gather=True)
        rollout = sampler(params, tokens, mask, jax.random.key(args.seed), images=images)
    except (ValueError, FileNotFoundError, sharding.DistributedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not workdir.is_writer():  # every process sampled its rows; process 0 prints them all
        return 0
    texts = response_texts(rollout.tokens, rollout.response_mask, rollout.finished, tokenizer)
    finished = rollout.finished.tolist()
    if len(texts) == 1 and args.prompts_file is None:
        print(texts[0])
    else:
        g = args.num_samples
        for i, (text, fin) in enumerate(zip(texts, finished)):
            print(json.dumps({"prompt": prompts[i // g], "completion": text, "finished": fin}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
