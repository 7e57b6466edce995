"""Sample completions from a model: ``python -m o1jax.generate --model PATH --prompt TEXT``.

PATH is a Hugging Face model directory (Llama, Qwen2 or Qwen2.5-VL with tokenizer.json; the
prompt is encoded as given) or a training workdir (its latest checkpoint; the prompt is the
user's text in the run's chat template when the run trained with one,
``data.use_chat_template``). A vision-language model reads ``--image FILE`` with every prompt
(``data.builders.load_image``: alpha over white, RGB, bicubic): a Qwen2.5-VL at the size its
processor gives the image (aspect ratio kept, area within the preprocessor_config.json's
min/max pixels), else (``--image-size``, or o1jax's own encoder) resized to the model's square
size; its placeholder tokens go where training prompts have them (``data.prompts.prompt_ids``).
With one prompt and one sample the completion text alone is printed; with ``--prompts-file`` or
``--num-samples`` > 1 one JSON object per completion is printed: {"prompt", "completion",
"finished"}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import jax
import numpy as np

from o1jax import sharding, workdir
from o1jax.data.builders import load_image
from o1jax.data.prompts import PromptFormat, pad_prompts, prompt_ids, stack_images
from o1jax.models import ModelConfig, hf
from o1jax.models.patches import Patches
from o1jax.models.transformer import Params
from o1jax.policy import Policy, command_mesh, from_hf, load_policy
from o1jax.rollout import SamplingConfig, make_sampler
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
                    help="a Hugging Face vision-language model reads images squared to this "
                    "many pixels (a multiple of its patch x merge size; default: each image at "
                    "the size its processor gives it); a workdir's policy reads the size it "
                    "trained on")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--greedy", action="store_true", help="argmax decoding")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--num-samples", type=int, default=1, help="completions per prompt (G)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mesh-shape", default=None,
                    help="data,fsdp,tensor, e.g. 1,1,-1 (default: one device)")
    ap.add_argument("--dtype", default=None, help="compute dtype, float32 or bfloat16 (default: "
                    "a workdir's, else float32)")
    sharding.add_distributed_flags(ap)
    return ap.parse_args(argv)


def prompt_inputs(prompts: list[str], image: str | None, cfg: ModelConfig, tokenizer: Tokenizer,
                  fmt: PromptFormat) -> tuple[list[list[int]], np.ndarray | Patches | None]:
    """Each prompt's token ids in ``fmt`` and, for a vision-language model, the image (the same
    for every prompt) with its placeholders where ``fmt`` puts them: [B, S, S, 3] uint8 at the
    model's square size, or ``Patches`` at the size the checkpoint's processor gives it (its
    aspect ratio kept) where the model reads images at their own sizes."""
    if cfg.vision is None:
        if image is not None:
            raise ValueError(f"--image {image}: this is a text-only model (no vision encoder)")
        return [prompt_ids({"question": p}, tokenizer, fmt) for p in prompts], None
    if image is None:
        raise ValueError("this vision-language model reads an image with every prompt: give "
                         "--image FILE")
    pixels = load_image(image, cfg.vision.read_size, where=f"--image {image}")
    examples = [{"question": p, "image": pixels} for p in prompts]
    return [prompt_ids(e, tokenizer, fmt) for e in examples], stack_images(examples, fmt)


def load(args) -> tuple[Policy, Params]:
    """(policy, params) of ``--model`` on the mesh of ``--mesh-shape`` in ``--dtype``: a
    workdir's with its run's chat template choice (the prompt is the whole user text), or a
    Hugging Face directory's with the prompt as given."""
    mesh = command_mesh(args.mesh_shape)
    if workdir.is_workdir(args.model):
        if args.image_size is not None:
            raise ValueError("--image-size is for Hugging Face models; a workdir's policy "
                             "reads the image size it trained on")
        policy, params = load_policy(args.model, mesh=mesh, dtype=args.dtype)
        return policy._replace(prompt=dataclasses.replace(
            policy.prompt, template="{question}", max_prompt_len=None)), params
    policy = from_hf(args.model, mesh, args.dtype or "float32", args.image_size,
                     template="{question}")
    return policy, hf.load_params(args.model, policy.model)


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
        (model, tokenizer, fmt), params = load(args)
        cfg_sampling = SamplingConfig(
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
            top_k=args.top_k, greedy=args.greedy, num_samples=args.num_samples,
            stop_ids=tokenizer.stop_ids, pad_id=tokenizer.pad_id)
        ids, images = prompt_inputs(prompts, args.image, model.cfg, tokenizer, fmt)
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
