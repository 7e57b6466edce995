"""Supervised warm-start: teacher forcing on reference solutions (GPT-style next-token loss on
the solution tokens given the prompt)."""

from __future__ import annotations

import functools
import logging
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from o1jax import flops, sharding
from o1jax.data.pipeline import PromptPipeline
from o1jax.data.prompts import PromptFormat, prompt_ids, stack_images
from o1jax.loop import run_loop
from o1jax.models.transformer import Params, Transformer, positions_from_mask
from o1jax.optim import apply_if_finite, make_optimizer, warmup_cosine
from o1jax.rollout.tools import split_outputs
from o1jax.tokenizer import Tokenizer

log = logging.getLogger("o1jax.sft")


def encode_sft(examples: Sequence[dict], tokenizer: Tokenizer, length: int,
               fmt: PromptFormat = PromptFormat()) -> dict:
    """Right-padded [B, length] tokens of prompt (``fmt``, not cut) + solution + stop token,
    with a loss mask on the solution and stop tokens only, less its tool outputs
    (``<output>...</output>``: the rollout's tool writes them, so the policy never learns to).
    Too-long rows are cut at ``length`` (a prompt must leave room for a solution token). A
    vision policy's prompts hold their image's placeholders and the batch has its "images"
    (``prompts.stack_images``)."""
    b = len(examples)
    tokens = np.full((b, length), tokenizer.pad_id, np.int32)
    mask = np.zeros((b, length), bool)
    target = np.zeros((b, length), bool)
    for i, ex in enumerate(examples):
        prompt = prompt_ids(ex, tokenizer, fmt)
        if len(prompt) >= length:
            raise ValueError(f"a prompt of {len(prompt)} tokens ({ex['question'][:40]!r}) "
                             f"leaves no room for its solution in sft.max_len={length}: raise "
                             "sft.max_len")
        answer, learnt = [], []
        for text, by_policy in split_outputs(ex["solution"]):
            ids = tokenizer.encode(text, add_special_tokens=False)
            answer += ids
            learnt += [by_policy] * len(ids)
        ids = (prompt + answer + [tokenizer.stop_ids[0]])[:length]
        tokens[i, :len(ids)] = ids
        mask[i, :len(ids)] = True
        target[i, len(prompt):len(ids)] = (learnt + [True])[:len(ids) - len(prompt)]
    batch = {"tokens": tokens, "mask": mask, "target": target}
    if fmt.reads_images:
        batch["images"] = stack_images(examples, fmt, largest=jax.process_count() > 1)
    return batch


def sft_loss(policy: Transformer, params: Params, batch: dict) -> tuple[jax.Array, dict]:
    """Mean negative log-likelihood of the target tokens, and token accuracy."""
    tokens, mask = batch["tokens"], batch["mask"]
    images = batch.get("images")
    extra = {} if images is None else policy.image_inputs(params, images)
    logits, _ = policy.apply(params, tokens, positions_from_mask(mask), mask, **extra)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    nll = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    tgt = batch["target"][:, 1:].astype(jnp.float32)
    n = jnp.maximum(jnp.sum(tgt), 1.0)
    acc = jnp.sum((jnp.argmax(logits[:, :-1], -1) == tokens[:, 1:]) * tgt) / n
    return jnp.sum(nll * tgt) / n, {"token_accuracy": acc}


def sft_step(state: dict, batch: dict, *, policy: Transformer,
             opt: optax.GradientTransformation) -> tuple[dict, dict]:
    """One optax step; a non-finite loss or gradient leaves the state unchanged (counted)."""
    (loss, aux), grads = jax.value_and_grad(functools.partial(sft_loss, policy), has_aux=True)(
        state["params"], batch)
    params, opt_state, ok = apply_if_finite(state["params"], state["opt"], grads, opt, loss)
    new_state = {"params": params, "opt": opt_state, "step": state["step"] + 1,
                 "skipped_updates": state["skipped_updates"] + (~ok).astype(jnp.int32)}
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads),
                       "skipped_updates": (~ok).astype(jnp.float32), **aux}


def init_sft_state(params: Params, opt: optax.GradientTransformation) -> dict:
    return {"params": params, "opt": opt.init(params), "step": jnp.zeros((), jnp.int32),
            "skipped_updates": jnp.zeros((), jnp.int32)}


def run_sft(exp, params: Params, mix: Callable[[int, list], list] | None = None
            ) -> tuple[Params, bool]:
    """The SFT stage of a run (``exp``: an ``experiment.Experiment``): resumable teacher forcing
    on the reference solutions; ``mix(step, examples)`` may replace some of a step's examples
    (self-play's proposer demonstrations). Returns (params, preempted)."""
    cfg = exp.cfg
    opt = make_optimizer(warmup_cosine(cfg.sft.lr, cfg.sft.num_steps, cfg.sft.warmup_steps))
    pipeline = PromptPipeline(exp.sources["train"], exp.tokenizer, cfg.sft.batch_size,
                              exp.prompt, seed=cfg.seed, process_index=jax.process_index(),
                              process_count=jax.process_count())
    # scalars and optimizer counts committed to the mesh, as the step returns them: one compile
    state = jax.tree.map(lambda x: x if isinstance(x.sharding, jax.sharding.NamedSharding) else
                         jax.device_put(x, sharding.replicated(exp.mesh)),
                         init_sft_state(params, opt))
    step_fn = jax.jit(functools.partial(sft_step, policy=exp.policy, opt=opt),
                      donate_argnums=(0,))
    step_flops = flops.sft_step_flops(exp.policy.cfg, cfg.sft.batch_size, cfg.sft.max_len)

    def step(state, i):
        _, examples = pipeline.next_examples()
        if mix is not None:
            examples = mix(i, examples)
        batch = encode_sft(examples, exp.tokenizer, cfg.sft.max_len, exp.prompt)
        state, metrics = step_fn(state, sharding.host_local_to_global(exp.mesh, batch))
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        return state, dict(metrics, flops=step_flops)

    state, preempted = run_loop(cfg, exp.workdir, "sft", state, pipeline, step,
                                cfg.sft.num_steps)
    return state["params"], preempted


def fit(model: Transformer, params: Params, next_examples: Callable[[int], list],
        tokenizer: Tokenizer, fmt: PromptFormat, length: int, steps: int, lr: float,
        warmup: int = 30, log_every: int = 100) -> tuple[Params, list[float]]:
    """Teacher forcing outside a training run: ``steps`` optax steps (``warmup_cosine``) on
    ``next_examples(step)``'s rows ({"question", "solution"}, encoded as ``encode_sft``, at
    most ``length`` tokens): what a generative verifier trains with (``o1jax/search/genrm.py``).
    Returns the parameters and each step's loss."""
    opt = make_optimizer(warmup_cosine(lr, steps, min(warmup, steps // 2)))
    step_fn = jax.jit(functools.partial(sft_step, policy=model, opt=opt), donate_argnums=(0,))
    # a copy: the step donates its state, and the caller may still need ``params``
    state, losses = init_sft_state(jax.tree.map(jnp.copy, params), opt), []
    for i in range(steps):
        batch = encode_sft(next_examples(i), tokenizer, length, fmt)
        # cut to the longest row, in multiples of 16 tokens: a few compiled shapes, little
        # padding (a GenRM's rows are half MAX_ROW on average)
        longest = int(batch["mask"].any(axis=0).nonzero()[0].max()) + 1
        cut = min(length, -(-longest // 16) * 16)
        state, metrics = step_fn(state, {k: v[:, :cut] for k, v in batch.items()})
        losses.append(float(metrics["loss"]))
        if (i + 1) % log_every == 0 or i + 1 == steps:
            log.info("step %d/%d: loss %.4f, token accuracy %.4f", i + 1, steps, losses[-1],
                     float(metrics["token_accuracy"]))
    return state["params"], losses
