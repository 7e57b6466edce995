"""Value models: score how likely a (partial) solution is to end correct.

What search and best-of-N call "the verifier" (``--verifier``), as distinct from the answer
checker (``o1jax/rewards/verifier.py``), whose labels train them. Three kinds, one interface
(``ValueModel``): the PPO critic of an RL run as it is; an outcome reward model (ORM) trained
on the policy's own samples labelled by the checker; a process reward model (PRM) trained on
Math-Shepherd labels at step ends (``o1jax/search/value_training.py``). The value at a
response's last token is its outcome score; at a step's end (a newline), the process score of
the solution so far. ORM and PRM checkpoints are Orbax directories with a ``verifier.json``
(the file name users' checkpoints already carry) naming their kind, the policy model they were
trained for, the value model's own shapes (``value_config``: the policy's, or larger) and its
output: a value read clipped to [0, 1], or a logit read through a sigmoid (an ORM trained with
the pairwise loss, whose scores only rank). A fourth kind needs no model: ``confidence``, the
policy's own geometric-mean probability of a finished sample's tokens as it drew them (the
signal of DeepConf and self-certainty), free to compute, for the strategies that choose among
finished samples; it cannot score a partial solution, so step-level search refuses it. A fifth,
``genrm``, is a causal LM that checks a Countdown answer in writing (``o1jax/search/genrm.py``):
a finished answer's score, refused by step-level search like ``confidence``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from o1jax import flops
from o1jax import policy as policy_lib
from o1jax import workdir as wd
from o1jax.models.config import PRESETS, ModelConfig
from o1jax.models.transformer import Params, Transformer
from o1jax.rollout.scoring import prefix_values

KINDS = ("critic", "orm", "prm", "confidence", "genrm")
ANSWER_ONLY = ("confidence", "genrm")   # score finished answers, not partial solutions
OUTPUTS = ("value", "logit")
SAMPLE_RULES = "best_of_n, weighted_majority, compute_optimal"   # what confidence can serve
META = "verifier.json"
# the fields of a model's shapes that a value model may choose apart from its policy's; the
# vocabulary, context length and numerics stay the policy's (it reads the policy's tokens)
SHAPES = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "mlp_dim")


class ValueModel(NamedTuple):
    """kind: one of KINDS; model: the transformer (a scalar head, or a GenRM's next-token head;
    the policy's shapes or its own, ``value_config``; None for ``confidence``); params: its
    parameters; source: where it was read from (for messages); output: one of OUTPUTS, how its
    head's number becomes a score (``squash``)."""
    kind: str
    model: Transformer
    params: Params
    source: str
    output: str = "value"


def squash(output: str, raw):
    """Scores in [0, 1] from a value head's numbers (numpy or jax arrays): "value" clipped,
    "logit" through a sigmoid."""
    if output == "logit":   # tanh: no overflow for large negative logits
        return 0.5 + 0.5 * np.tanh(raw / 2) if isinstance(raw, np.ndarray) else jax.nn.sigmoid(raw)
    return np.clip(raw, 0.0, 1.0) if isinstance(raw, np.ndarray) else jnp.clip(raw, 0.0, 1.0)


def value_config(policy_cfg: ModelConfig, size: str | None) -> ModelConfig:
    """The value model's shapes: the policy's (``size`` None or "policy"), a preset's
    (``size`` a name of ``PRESETS``: its SHAPES only) or the policy's with some SHAPES replaced
    (``size`` "num_layers=4,hidden_size=256"); ValueError naming the forms."""
    if not size or size == "policy":
        return policy_cfg
    if size in PRESETS:
        return policy_cfg.replace(**{k: getattr(PRESETS[size], k) for k in SHAPES})
    shapes = {}
    for item in size.split(","):
        key, _, value = item.strip().partition("=")
        if key not in SHAPES or not value.strip().isdigit():
            raise ValueError(f"--model-size {size!r}: expected policy, a preset "
                             f"({', '.join(sorted(PRESETS))}) or KEY=INT,... with KEY in "
                             f"{', '.join(SHAPES)}")
        shapes[key] = int(value)
    return policy_cfg.replace(**shapes)


def parse(spec: str) -> tuple[str, str]:
    """``critic`` | ``confidence`` | ``orm:PATH`` | ``prm:PATH`` | ``genrm:PATH`` -> (kind,
    path); ValueError naming the forms."""
    kind, _, path = spec.partition(":")
    if kind not in KINDS or (kind in ("critic", "confidence")) != (path == ""):
        raise ValueError(f"--verifier {spec!r}: expected critic, confidence, orm:PATH, "
                         "prm:PATH or genrm:PATH")
    return kind, path


def load(spec: str, policy: Transformer, workdir=None, step: int | None = None,
         steps: bool = False) -> ValueModel:
    """The value model ``spec`` names, checked against ``policy`` (the model whose tokens it
    scores), in the shapes it was saved with. ``steps``: the caller scores partial solutions
    (step-level search, traces), which ``confidence`` cannot."""
    kind, path = parse(spec)
    if kind in ANSWER_ONLY and steps:
        raise ValueError(f"--verifier {kind} scores finished samples only ({SAMPLE_RULES}); "
                         "step-level search and traces need orm:PATH, prm:PATH or critic")
    if kind == "confidence":
        return ValueModel(kind, None, None, "the policy's own token probabilities")
    if kind == "critic":
        model = Transformer(policy.cfg, head="value", mesh=None)
        if workdir is None:
            raise ValueError("--verifier critic needs --workdir (the RL run whose critic it is)")
        algorithm = wd.load_config(workdir).rl.algorithm
        if algorithm != "ppo":
            raise ValueError(f"{workdir}: the RL run has no critic ({algorithm} trains none); "
                             "train a value model with python -m o1jax.train_verifier")
        critic = policy_lib.restore_params(workdir, model, step, "rl", "critic")[0]
        return ValueModel(kind, model, critic, f"{workdir} (critic)")
    root = wd.resolve(path)
    if not (root / META).exists():
        raise ValueError(f"--verifier {spec}: {root} holds no value model ({META} missing); write "
                         "one with python -m o1jax.train_verifier")
    meta = wd.read_json(root / META)
    if meta["kind"] != kind:
        raise ValueError(f"--verifier {spec}: {root} holds a {meta['kind']} value model")
    # checkpoints written before value models had shapes of their own name only the policy's
    trained_for = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in meta.get("policy", meta["model"]).items()})
    if trained_for != policy.cfg:
        diff = sorted(k for k, v in dataclasses.asdict(policy.cfg).items()
                      if getattr(trained_for, k) != v)
        raise ValueError(f"--verifier {spec} was trained for another model (differs in "
                         f"{', '.join(diff)}); train one for this policy with python -m "
                         "o1jax.train_verifier")
    # only SHAPES may differ from the policy (value_config), so the policy's config with the
    # saved shapes is the saved config, hashable as jit needs it
    model = Transformer(policy.cfg.replace(**{k: meta["model"][k] for k in SHAPES}),
                        head="policy" if kind == "genrm" else "value", mesh=None)
    params = ocp.StandardCheckpointer().restore(root / "params",
                                                policy_lib.abstract_params(model))
    return ValueModel(kind, model, params, str(root), meta.get("output", "value"))


def save(root, kind: str, policy_cfg: ModelConfig, params: Params, info: dict,
         model_cfg: ModelConfig | None = None, output: str = "value") -> None:
    """Writes a value-model checkpoint (process 0 writes verifier.json; Orbax coordinates the
    arrays): its kind, the policy it scores, its own shapes (``model_cfg``, default the
    policy's: ``value_config``) and its output (OUTPUTS)."""
    model_cfg = model_cfg or policy_cfg
    if output not in OUTPUTS or any(getattr(model_cfg, k) != getattr(policy_cfg, k)
                                    for k in dataclasses.asdict(policy_cfg) if k not in SHAPES):
        raise ValueError(f"a value model's output is one of {OUTPUTS} and only its {SHAPES} may "
                         "differ from the policy's")
    root = wd.resolve(root)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(root / "params", params, force=True)
    ckpt.wait_until_finished()
    if wd.is_writer():
        wd.write_text(root / META, json.dumps(dict(
            kind=kind, model=dataclasses.asdict(model_cfg), policy=dataclasses.asdict(policy_cfg),
            output=output, **info), indent=2))


@functools.partial(jax.jit, static_argnums=0)
def _values(model: Transformer, params: Params, tokens: jax.Array, mask: jax.Array, images):
    return prefix_values(model, params, tokens, mask, images)


def values(value_model: ValueModel, tokens: np.ndarray, mask: np.ndarray, batch: int = 64,
           images=None, group: int = 1) -> np.ndarray:
    """V(prefix ending at each column) of sequences tokens, mask [R, T], in [0, 1] (the chance
    of ending correct; ``squash``), in batches of ``batch`` rows of one shape: [R, T] f32.
    ``images``: a vision policy's images, [R / group, ...] (square images, or ``Patches`` of one
    shape), row r reading image r // group."""
    out = []
    for start in range(0, len(tokens), batch):
        rows = np.arange(start, start + batch).clip(max=len(tokens) - 1)  # one compiled shape
        read = None if images is None else jax.tree.map(lambda a: a[rows // group], images)
        out.append(np.asarray(_values(value_model.model, value_model.params,
                                      jnp.asarray(tokens[rows]), jnp.asarray(mask[rows]),
                                      read))[:len(tokens) - start])
    return squash(value_model.output, np.concatenate(out))


def outcome_scores(value_model: ValueModel, tokens: np.ndarray, mask: np.ndarray,
                   images=None, group: int = 1) -> np.ndarray:
    """The value at each row's last real token: [R] (``images``, ``group``: as ``values``)."""
    v = values(value_model, tokens, mask, images=images, group=group)
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    return v[np.arange(len(v)), last]


def forward_costs(model: ModelConfig | None, gen) -> np.ndarray:
    """[N, G] FLOPs of a value model's forward over each sample of ``gen`` (a
    ``strategies.Generation``) with its prompt; zeros without a model (``confidence`` is read
    off the sampling)."""
    if model is None:
        return np.zeros(gen.lengths.shape)
    return np.array([[flops.verifier_flops(model, int(gen.prompt_lengths[i] + n)) for n in row]
                     for i, row in enumerate(gen.lengths)])


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for ``labels`` (1 correct, 0 wrong): the chance a
    random correct solution scores above a random wrong one, ties counting half. None when
    either class is empty."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    allv = np.concatenate([pos, neg])
    for v in np.unique(allv):  # ties share their mean rank
        tie = allv == v
        ranks[tie] = ranks[tie].mean()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def within_problem_auc(scores: np.ndarray, correct: np.ndarray, finished: np.ndarray
                       ) -> float | None:
    """The chance a correct finished solution scores above a wrong finished one *of the same
    problem* (ties half), over all such pairs; scores, correct, finished: [N, G]. What
    best-of-N needs: a value model can rank problems well (high ``auc``) and still pick a
    problem's wrong answers."""
    wins = pairs = 0.0
    for s, c, f in zip(scores, correct > 0, finished):
        good, bad = s[f & c], s[f & ~c]
        if len(good) and len(bad):
            diff = good[:, None] - bad[None, :]
            wins += float((diff > 0).sum() + 0.5 * (diff == 0).sum())
            pairs += diff.size
    return wins / pairs if pairs else None


def report(value_model: ValueModel, scores: np.ndarray, correct: np.ndarray,
           finished: np.ndarray) -> dict:
    """The value model's own accuracy on sampled solutions (scores, correct, finished: [N, G]):
    AUC over finished ones, within a problem, and its mean score on right and wrong ones."""
    mean = lambda x: float(x.mean()) if x.size else None  # noqa: E731
    right = correct > 0
    return dict(verifier=value_model.source, kind=value_model.kind,
                auc=auc(scores[finished], correct[finished]),
                within_problem_auc=within_problem_auc(scores, correct, finished),
                mean_score_correct=mean(scores[finished & right]),
                mean_score_wrong=mean(scores[finished & ~right]))
