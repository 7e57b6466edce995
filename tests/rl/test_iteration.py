"""The compiled RL iteration: PPO and GRPO learn a toy task; sharding changes nothing; a
non-finite update is skipped; micro-batches and padding-free buckets change nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax import sharding
from o1jax.models import Transformer, preset
from o1jax.rl.config import RLConfig
from o1jax.rl.iteration import make_iteration
from o1jax.run.rl import Programs
from o1jax.rl.state import init_state

V, P = 16, 6
TARGET = 5


def toy_reward(roll, example_ids):
    """1 when the first response token is TARGET (a random policy hits it 1/16 of the time)."""
    r = (roll.tokens[:, P] == TARGET).astype(jnp.float32)
    return r, {"accuracy": jnp.mean(r)}


def _setup(algorithm, mesh=None, embed_scale=1.0, **kw):
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32), mesh=mesh)
    params = policy.init(jax.random.key(0))
    params["embed"] = params["embed"] * embed_scale
    args = dict(algorithm=algorithm, policy_lr=3e-3, value_lr=3e-3, epochs=2, minibatches=2,
                batch_prompts=8, group_size=8, max_new_tokens=3)
    args.update(kw)
    cfg = RLConfig(**args)
    state = init_state(params, cfg, jax.random.key(1))
    it, shardings = make_iteration(policy, cfg, toy_reward, stop_ids=(0,))
    if mesh is not None:
        state = jax.device_put(state, shardings)
    return state, it


def _batch(i):
    toks = np.random.RandomState(i).randint(1, V, (8, P)).astype(np.int32)
    return {"tokens": toks, "mask": np.ones_like(toks, bool), "example_ids": np.arange(8)}


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_rl_raises_reward_on_a_toy_task(algorithm):
    state, it = _setup(algorithm)
    rewards = []
    for i in range(25):
        state, m, _ = it(state, _batch(i), jax.random.fold_in(jax.random.key(2), i))
        rewards.append(float(m["reward_mean"]))
    assert np.mean(rewards[:3]) < 0.3
    assert np.mean(rewards[-3:]) > 0.8, rewards
    assert int(state.step) == 25 and float(m["skipped_updates"]) == 0


@pytest.mark.parametrize("algorithm, shape", [("ppo", (2, 2, 2)), ("grpo", (8, 1, 1)),
                                               ("ppo", (1, 2, 4))])
def test_sharded_iteration_equals_single_device(algorithm, shape):
    single, it1 = _setup(algorithm)
    mesh = sharding.make_mesh(shape)
    sharded, it8 = _setup(algorithm, mesh=mesh)
    for i in range(2):
        key = jax.random.fold_in(jax.random.key(2), i)
        single, m1, _ = it1(single, _batch(i), key)
        sharded, m8, _ = it8(sharded, _batch(i), key)
        for k in m1:
            np.testing.assert_allclose(float(m8[k]), float(m1[k]), rtol=2e-3, atol=2e-4,
                                       err_msg=k)
    wq = sharded.policy["layers"]["wq"]
    assert len(wq.sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(wq), np.asarray(single.policy["layers"]["wq"]),
                               atol=1e-4)


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_critic_warmup_freezes_the_policy_only_with_a_critic(algorithm):
    state, it = _setup(algorithm, critic_warmup=2)
    embed = np.asarray(state.policy["embed"]).copy()
    value = np.asarray(state.critic["embed"]).copy() if algorithm == "ppo" else None
    moved = []
    for i in range(3):
        state, _, _ = it(state, _batch(i), jax.random.key(i))
        moved.append(not np.array_equal(np.asarray(state.policy["embed"]), embed))
        embed = np.asarray(state.policy["embed"]).copy()
    # PPO: two critic-only iterations, then the policy moves; GRPO has no critic to warm up
    assert moved == ([False, False, True] if algorithm == "ppo" else [True, True, True])
    if value is not None:
        assert not np.array_equal(np.asarray(state.critic["embed"]), value)


def test_nonfinite_update_is_skipped():
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32))
    params = policy.init(jax.random.key(0))
    cfg = RLConfig(algorithm="grpo", batch_prompts=2, group_size=4, max_new_tokens=3)

    def nan_reward(roll, ids):
        r = jnp.where(jnp.arange(roll.tokens.shape[0]) == 0, jnp.nan, 1.0)
        return r, {}

    state = init_state(params, cfg, jax.random.key(1))
    before = np.asarray(state.policy["embed"]).copy()
    it, _ = make_iteration(policy, cfg, nan_reward)
    state, m, _ = it(state, _batch(0) | {"tokens": _batch(0)["tokens"][:2],
                                       "mask": _batch(0)["mask"][:2],
                                       "example_ids": np.arange(2)}, jax.random.key(0))
    assert float(m["skipped_updates"]) == 1.0
    np.testing.assert_array_equal(np.asarray(state.policy["embed"]), before)
    assert np.all(np.isfinite(np.asarray(state.policy["embed"])))



@pytest.mark.parametrize("algorithm, loss_agg", [("ppo", "token_mean"),
                                                  ("grpo", "seq_mean_token_sum"),
                                                  ("grpo", "seq_mean_token_mean")])
def test_micro_batches_equal_the_whole_minibatch(algorithm, loss_agg):
    """Gradient accumulation over micro-batches of 2 rows (and vocabulary chunks) gives the
    whole minibatch's losses and parameters: 32 rows, 2 minibatches of 16."""
    key = jax.random.key(3)
    results = []
    for micro, chunk in ((0, 0), (2, 0), (4, 5)):
        state, it = _setup(algorithm, loss_agg=loss_agg, micro_batch=micro, vocab_chunk=chunk,
                           kl_coef=0.1, batch_prompts=4, group_size=8)
        batch = {k: v[:4] for k, v in _batch(0).items()}
        results.append(it(state, batch, key)[:2])
    (ref_state, ref_m), others = results[0], results[1:]
    for state, m in others:
        for name in ("policy_loss", "entropy", "clip_frac", "approx_kl", "grad_norm", "kl",
                     "logprob_mismatch_mean", "logprob_mismatch_max"):
            np.testing.assert_allclose(m[name], ref_m[name], rtol=1e-4, atol=1e-6, err_msg=name)
        if algorithm == "ppo":
            np.testing.assert_allclose(m["value_loss"], ref_m["value_loss"], rtol=1e-4)
        # four Adam steps (lr 3e-3): float noise in near-zero gradients moves a weight by
        # up to a few percent of lr
        for a, b in zip(jax.tree.leaves(state.policy), jax.tree.leaves(ref_state.policy)):
            np.testing.assert_allclose(a, b, atol=1e-4)


def test_bf16_recomputed_old_logprobs_start_the_ratio_at_one():
    """bf16 compute: the sampler's log-probs differ from the training forward pass's; with the
    old log-probs recomputed (the default for bf16) the first minibatch's ratio is 1."""
    batch, key = _batch(0), jax.random.key(4)
    out = {}
    for mode in ("rollout", "auto"):
        policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32, dtype="bfloat16"))
        cfg = RLConfig(algorithm="grpo", batch_prompts=8, group_size=4, max_new_tokens=6,
                       minibatches=2, old_logprobs=mode)
        assert cfg.recomputes_old_logprobs(policy.cfg.compute_dtype) == (mode == "auto")
        state = init_state(policy.init(jax.random.key(0)), cfg, jax.random.key(1))
        it, _ = make_iteration(policy, cfg, toy_reward, stop_ids=(0,))
        out[mode] = it(state, batch, key)[1]
    assert float(out["auto"]["first_ratio_max_dev"]) <= 1e-6
    assert float(out["rollout"]["first_ratio_max_dev"]) > 1e-3      # what recompute removes
    # the mismatch is measured either way (whole batch / first minibatch) and is not zero
    for mode in out:
        assert float(out[mode]["logprob_mismatch_max"]) > 1e-3
        assert 0 <= float(out[mode]["logprob_mismatch_frac"]) <= 1


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_padding_free_update_equals_the_padded_one(algorithm):
    """Half the vocabulary stops a response, so responses end at many lengths within the
    24-token budget: with 4 length buckets each micro-batch of 8 rows (rows grouped by length
    within their minibatch) runs over fewer columns, and the losses, gradients and new
    parameters (policy and critic) are those of the padded update."""
    key = jax.random.key(5)
    out = []
    for buckets in (1, 4):
        policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=40))
        cfg = RLConfig(algorithm=algorithm, batch_prompts=8, group_size=8, max_new_tokens=24,
                       minibatches=2, micro_batch=8, kl_coef=0.05, length_buckets=buckets)
        state = init_state(policy.init(jax.random.key(0)), cfg, jax.random.key(1))
        it, _ = make_iteration(policy, cfg, toy_reward, stop_ids=tuple(range(8)))
        out.append(it(state, _batch(0), key)[:2])
    (full_state, full), (state, bucketed) = out
    assert float(full["update_token_fraction"]) == 1.0
    assert float(bucketed["update_token_fraction"]) < 0.8
    names = ["policy_loss", "entropy", "kl", "clip_frac", "grad_norm", "reward_mean"]
    for name in names + (["value_loss", "explained_variance"] if algorithm == "ppo" else []):
        np.testing.assert_allclose(bucketed[name], full[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    for model in ("policy", "critic") if algorithm == "ppo" else ("policy",):
        for a, b in zip(jax.tree.leaves(getattr(state, model)),
                        jax.tree.leaves(getattr(full_state, model))):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_buckets_compile_one_program_whatever_the_lengths():
    from o1jax.rl.iteration import bucket_lengths
    assert bucket_lengths(24, 4) == (6, 12, 18, 24) and bucket_lengths(10, 3) == (4, 7, 10)
    assert bucket_lengths(5, 1) == (5,)
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=40))
    cfg = RLConfig(algorithm="grpo", batch_prompts=8, group_size=4, max_new_tokens=24,
                   micro_batch=4, length_buckets=4)
    state = init_state(policy.init(jax.random.key(0)), cfg, jax.random.key(1))
    it = Programs(make_iteration(policy, cfg, toy_reward, stop_ids=tuple(range(8)))[0])
    fractions = set()
    for i in range(4):
        state, m, _ = it(state, _batch(i), jax.random.key(i))
        fractions.add(round(float(m["update_token_fraction"]), 6))
    assert len(it) == 1, "one compiled program serves every bucket"
    assert len(fractions) > 1 and max(fractions) < 1, fractions   # lengths differed


def test_a_vision_policy_learns_to_read_its_image():
    """Each prompt holds 4 image placeholders and an image that is all white or all black; the
    reward pays token 5 after a white image and 6 after a black one, so a policy blind to the
    image earns at most 0.5. GRPO with images encoded inside the one compiled iteration (the
    rollout's prefill and every scoring and update pass) gets past that."""
    from o1jax.models.vision_config import VisionConfig
    vis = VisionConfig(image_size=8, patch_size=2, hidden_size=16, num_layers=1, num_heads=2,
                       mlp_dim=32, merge_size=2)
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32, vision=vis,
                                image_token_id=1))
    cfg = RLConfig(algorithm="grpo", policy_lr=3e-3, epochs=2, minibatches=2, batch_prompts=8,
                   group_size=8, max_new_tokens=2, micro_batch=8, length_buckets=2)
    state = init_state(policy.init(jax.random.key(0)), cfg, jax.random.key(1))

    def reward(roll, example_ids):       # example id 1: a white image
        r = (roll.tokens[:, P] == jnp.where(example_ids == 1, 5, 6)).astype(jnp.float32)
        return r, {"accuracy": jnp.mean(r)}

    it = Programs(make_iteration(policy, cfg, reward, stop_ids=(0,))[0])
    rewards, ratio_dev = [], []
    for i in range(30):
        rs = np.random.RandomState(100 + i)
        bright = rs.rand(8) < 0.5
        toks = rs.randint(2, V, (8, P)).astype(np.int32)
        toks[:, 1:5] = 1
        images = np.where(bright[:, None, None, None], 255, 0).astype(np.uint8) * np.ones(
            (8, 8, 8, 3), np.uint8)
        batch = {"tokens": toks, "mask": np.ones_like(toks, bool),
                 "example_ids": bright.astype(np.int32), "images": images}
        state, m, _ = it(state, batch, jax.random.key(i))
        rewards.append(float(m["reward_mean"]))
        ratio_dev.append(float(m["first_ratio_max_dev"]))
    assert np.mean(rewards[:3]) < 0.3
    assert np.mean(rewards[-4:]) > 0.8, rewards
    assert len(it) == 1
    # the sampler (image encoded in the prefill) and the trainer (per row) agree, even when the
    # policy samples the placeholder's id in a response
    assert max(ratio_dev) < 1e-4, ratio_dev


def test_dynamic_sampling_trains_on_informative_groups_first():
    """Prompts with an even example id get the same reward in every sample (no GRPO signal);
    odd ones alternate 0/1 over their samples. From 8 sampled prompts the batch of 4 is exactly
    the 4 informative groups; with 2 informative of 8 sampled, 2 masked fillers complete it."""
    def reward(roll, example_ids):
        alternate = (jnp.arange(example_ids.shape[0]) % 2).astype(jnp.float32)
        r = jnp.where(example_ids % 2 == 1, alternate, 1.0)
        return r, {}

    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32))
    cfg = RLConfig(algorithm="grpo", batch_prompts=4, oversample=2.0, group_size=4,
                   max_new_tokens=3, overlong_window=2, mask_truncated=True)
    state = init_state(policy.init(jax.random.key(0)), cfg, jax.random.key(1))
    it, _ = make_iteration(policy, cfg, reward, stop_ids=(0,))
    batch = _batch(0)
    state, m, _ = it(state, batch, jax.random.key(2))     # the state is donated
    assert (int(m["dynamic/informative_groups"]), int(m["dynamic/effective_batch"]),
            int(m["dynamic/filler_groups"])) == (4, 4, 0)
    assert float(m["dynamic/dropped_share"]) == 0.5 and float(m["dynamic/rollout_cost"]) == 2.0
    # 3 new tokens with a 2-token window: a response of 2 tokens pays -0.5, of 3 tokens -1
    assert -1.0 <= float(m["overlong_penalty_mean"]) <= 0.0
    batch["example_ids"] = np.array([1, 3, 0, 2, 4, 6, 8, 10])
    _, m, _ = it(state, batch, jax.random.key(3))
    assert (int(m["dynamic/informative_groups"]), int(m["dynamic/filler_groups"])) == (2, 2)


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_lora_trains_only_adapters_and_learns_the_toy_task(algorithm):
    """With rl.lora_rank the base never moves, the policy (and the critic) are adapters of it
    held by the optimizer alone, no reference copy is kept (the KL is to the base: 0 before
    the adapters move: up to the sampler's rounding), and RL still learns the toy task."""
    # LoRA adapts the projections, not the tied embedding or the final norm, which cap the
    # logits at |norm(h)| |E_5|: about 1.3 with the init's 0.02-scale embedding, where p(5)
    # stays near 0.15 whatever the adapters do (measured); a 5x embedding leaves room
    state, it = _setup(algorithm, embed_scale=5.0, lora_rank=4, lora_alpha=16.0,
                       policy_lr=1e-2, value_lr=1e-2, kl_coef=0.01)
    base = jax.tree.map(np.array, state.base)
    assert state.ref is None and set(state.policy) == {"layers"}
    assert jax.tree.structure(state.policy_opt[1][0].mu) == jax.tree.structure(state.policy)
    rewards = []
    for i in range(25):
        state, m, _ = it(state, _batch(i), jax.random.fold_in(jax.random.key(2), i))
        rewards.append(float(m["reward_mean"]))
        if i == 0:
            assert float(m["kl"]) < 1e-6      # the policy that sampled is the base itself
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.base), base)
    assert float(jnp.abs(state.policy["layers"]["wv"]["b"]).max()) > 0
    if algorithm == "ppo":
        assert float(jnp.abs(state.critic["lora"]["layers"]["w_up"]["b"]).max()) > 0
    assert np.mean(rewards[-3:]) > 0.8, rewards


def test_lora_reference_is_the_base_model():
    """The KL reference's log-probs with the adapters trained equal the base model's own,
    scored by the plain model on the params RL started from."""
    from o1jax.rl.logprobs import old_logprobs
    from o1jax.rollout.scoring import token_logprobs
    state, it = _setup("grpo", lora_rank=4, policy_lr=1e-2, kl_coef=0.05)
    params = jax.tree.map(np.array, state.base)
    for i in range(3):
        state, _, _ = it(state, _batch(i), jax.random.fold_in(jax.random.key(2), i))
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32))
    cfg = RLConfig(algorithm="grpo", batch_prompts=8, group_size=8, max_new_tokens=3,
                   lora_rank=4, kl_coef=0.05, old_logprobs="recompute", epochs=2, minibatches=2)
    tokens = jnp.asarray(np.random.RandomState(9).randint(1, V, (16, P + 3)), jnp.int32)
    mask = jnp.ones_like(tokens, bool)
    resp = mask.at[:, :P].set(False)
    old, ref, _, _ = old_logprobs(state, tokens, mask, resp, jnp.zeros(tokens.shape),
                                  policy=policy, cfg=cfg, temperature=1.0)
    base_logp, _ = token_logprobs(policy, params, tokens, mask, 1.0, 0)
    np.testing.assert_allclose(np.asarray(ref), np.asarray(base_logp), atol=1e-5)
    assert np.abs(np.asarray(old - ref)[np.asarray(resp)]).max() > 1e-3   # the policy moved


def test_a_mixture_of_experts_policy_trains_with_routing_replay():
    """GRPO on a tiny MoE with rl.routing_replay: the iteration runs, logs the router mismatch,
    and learns (the reward rises on the toy task)."""
    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32, architecture="qwen3_moe",
                                qk_norm=True, num_experts=4, experts_per_token=2,
                                moe_mlp_dim=32))
    cfg = RLConfig(algorithm="grpo", policy_lr=3e-3, epochs=2, minibatches=2, batch_prompts=8,
                   group_size=8, max_new_tokens=3, routing_replay=True)
    state = init_state(policy.init(jax.random.key(0)), cfg, jax.random.key(1))
    it, _ = make_iteration(policy, cfg, toy_reward, stop_ids=(0,))
    rewards = []
    for i in range(12):
        state, m, _ = it(state, _batch(i), jax.random.fold_in(jax.random.key(2), i))
        rewards.append(float(m["reward_mean"]))
    assert 0.0 <= float(m["router_mismatch"]) < 0.05
    assert np.mean(rewards[-3:]) > np.mean(rewards[:3]) + 0.2, rewards


def test_grpo_learns_to_call_a_tool():
    """Reward 1 for a response that calls the tool (token 3 closes a call; the tool writes 11):
    the share of responses that call rises from chance, logged as tools/share. (That the
    tool's tokens are left out of the loss is the rollout's response_mask, tests/rollout/
    test_tools.py.)"""
    from o1jax.rollout.tools import ToolCalls

    def run(tokens, closed):
        return np.full((len(closed), 1), 11, np.int32), closed.astype(np.int32)

    def called(roll, example_ids):
        r = (roll.tool_calls > 0).astype(jnp.float32)
        return r, {"accuracy": jnp.mean(r)}

    policy = Transformer(preset("tiny", vocab_size=V, max_seq_len=32))
    cfg = RLConfig(algorithm="grpo", policy_lr=3e-3, epochs=2, minibatches=2, batch_prompts=8,
                   group_size=8, max_new_tokens=3)
    state = init_state(policy.init(jax.random.key(0)), cfg, jax.random.key(1))
    it, _ = make_iteration(policy, cfg, called, stop_ids=(0,), tools=ToolCalls((3,), 1, 1, run))
    shares = []
    for i in range(12):
        state, m, _ = it(state, _batch(i), jax.random.fold_in(jax.random.key(2), i))
        shares.append(float(m["tools/share"]))
        np.testing.assert_allclose(float(m["tools/calls_mean"]), shares[-1])   # one call at most
    assert np.mean(shares[:2]) < 0.4 and np.mean(shares[-3:]) > 0.9, shares
