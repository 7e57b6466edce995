"""Plots, as PNG files (local or gs://): the run's report.png, the test-time and train-time
curves, self-play's buffer, pass@k, the training metrics, the search over RL (response length,
back-ups, accuracy against length); PNG bytes of images. A trace's own figures (attention maps,
the image heat map) are ``o1jax.traces.figures``."""

from __future__ import annotations

import io
import math

import matplotlib
import numpy as np
from etils import epath
from PIL import Image

from o1jax import scaling
from o1jax import workdir as wd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TRAINING_PANELS = (("reward_mean", "reward"), ("kl", "KL to the reference"),
                   ("entropy", "entropy"), ("response_length_mean", "response length"),
                   ("clip_frac", "clip fraction"),
                   ("logprob_mismatch_mean", "rollout vs training log-prob mismatch"))


def plot_run(workdir, out=None) -> epath.Path:
    """SFT loss, RL reward per iteration, and the held-out accuracies, in one PNG (``workdir``
    and ``out`` local or gs://)."""
    workdir = epath.Path(workdir)
    rows = wd.read_jsonl(workdir / "metrics.jsonl")
    sft = [r for r in rows if r["stage"] == "sft"]
    rl = [r for r in rows if r["stage"] == "rl"]
    evals = {}
    for name in ("sft", "rl"):
        path = workdir / f"eval_{name}.json"
        if path.exists():
            evals[name] = wd.read_json(path)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if sft:
        axes[0].plot([r["step"] for r in sft], [r["loss"] for r in sft])
    axes[0].set(title="SFT: next-token loss", xlabel="step")
    if rl:
        steps = [r["step"] for r in rl]
        reward = [r["reward_mean"] for r in rl]
        k = max(1, len(reward) // 10)
        smooth = [sum(reward[max(0, i - k + 1):i + 1]) / len(reward[max(0, i - k + 1):i + 1])
                  for i in range(len(reward))]
        axes[1].plot(steps, reward, alpha=0.3, label="per iteration")
        axes[1].plot(steps, smooth, label=f"mean of {k}")
        axes[1].legend()
    axes[1].set(title="RL: mean reward of sampled responses", xlabel="iteration")
    labels, values = [], []
    for name, key in (("sft", "greedy_accuracy"), ("rl", "greedy_accuracy")):
        if name in evals:
            labels.append(f"{name.upper()} greedy")
            values.append(evals[name][key])
    maj = [k for k in evals.get("rl", {}) if k.startswith("maj")]
    for key in maj:
        labels.append(f"RL {key.split('_')[0]}")
        values.append(evals["rl"][key])
    axes[2].bar(labels, values, color=["tab:gray", "tab:blue", "tab:green"][:len(values)])
    axes[2].set(title="held-out accuracy", ylim=(0, 1))
    for i, v in enumerate(values):
        axes[2].text(i, v + 0.02, f"{100 * v:.1f}%", ha="center")
    fig.tight_layout()
    return save_figure(fig, out or workdir / "report.png")


def save_figure(fig, out) -> epath.Path:
    """The figure as a PNG at ``out`` (local or gs://)."""
    out = epath.Path(out)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    out.write_bytes(buf.getvalue())
    return out


def plot_test_time(rows: list[dict], out) -> epath.Path:
    """test_time_compute.png: accuracy against log10 FLOPs per problem for each strategy (95%
    intervals as bands), pass@k dashed as the ceiling of any selection rule; one panel for all
    problems and one per difficulty bin. ``rows``: the evaluate command's results rows."""
    bins = ["all"] + sorted({r["bin"] for r in rows} - {"all"})
    cols = min(3, len(bins))
    rows_of_panels = -(-len(bins) // cols)
    fig, axes = plt.subplots(rows_of_panels, cols, figsize=(4.2 * cols, 3.8 * rows_of_panels),
                             squeeze=False, sharey=True)
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    colors = {s: f"C{i}" for i, s in enumerate(names)}
    for ax in axes.flat[len(bins):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, bins):
        for s in names:
            pts = sorted((r for r in rows if r["bin"] == name and r["strategy"] == s),
                         key=lambda r: r["flops"])
            if not pts:
                continue
            x = [math.log10(max(r["flops"], 1.0)) for r in pts]
            style = (dict(ls="--", marker="") if s == "pass_at_k" else
                     dict(ls="", marker="*", ms=11) if len(pts) == 1 else dict(marker="o", ms=3))
            ax.plot(x, [r["accuracy"] for r in pts], color=colors[s], label=s, **style)
            ax.fill_between(x, [r["ci_low"] for r in pts], [r["ci_high"] for r in pts],
                            color=colors[s], alpha=0.12, lw=0)
        count = next((r["problems"] for r in rows if r["bin"] == name), 0)
        ax.set(title=f"{name} ({count} problems)", xlabel="log10 FLOPs per problem",
               ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle("test-time compute")
    fig.tight_layout()
    return save_figure(fig, out)


def _rl_rows(workdir) -> list[dict]:
    rows = wd.read_jsonl(epath.Path(workdir) / "metrics.jsonl")
    return [r for r in rows if r["stage"] == "rl"]


def plot_selfplay(workdir, out=None) -> epath.Path:
    """selfplay.png from a self-play run's metrics: the proposals' and the buffer's difficulty,
    their diversity, and what the referee accepted and rejected, over iterations."""
    rows = _rl_rows(workdir)
    x = [r["step"] for r in rows]

    def series(key):
        return [_num(r.get(key)) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for key, label in (("proposer/digits", "digits (accepted proposals)"),
                       ("proposer/operators", "operators"),
                       ("proposer/answer_magnitude", "log10 |answer|"),
                       ("proposer/solve_rate", "solve rate"),
                       ("buffer/digits", "digits (buffer)"),
                       ("buffer/solve_rate", "solve rate (buffer, at entry)")):
        axes[0].plot(x, series(key), label=label, ls="--" if key.startswith("buffer") else "-")
    axes[0].set(title="difficulty", xlabel="iteration")
    for key, label in (("proposer/distinct_problems", "distinct accepted problems"),
                       ("proposer/distinct_patterns", "distinct operator patterns"),
                       ("proposer/trigram_entropy_bits", "trigram entropy (bits)"),
                       ("buffer/distinct_patterns", "patterns in the buffer")):
        axes[1].plot(x, series(key), label=label)
    ax2 = axes[1].twinx()
    ax2.plot(x, series("buffer/size"), color="k", ls=":", label="buffer size")
    ax2.set_ylabel("buffer size")
    axes[1].set(title="diversity", xlabel="iteration")
    reasons = sorted({k for r in rows for k in r if k.startswith("proposer/rejected/")})
    shown = [k for k in reasons if any(float(v) > 0 for v in series(k))]
    axes[2].stackplot(x, [series("proposer/accept_rate")] + [series(k) for k in shown],
                      labels=["accepted"] + [k.split("/")[-1] for k in shown])
    axes[2].set(title="referee verdicts (fraction of proposals)", xlabel="iteration",
                ylim=(0, 1))
    for ax in axes:
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return save_figure(fig, out or epath.Path(workdir) / "selfplay.png")


def plot_train_time(runs, fits, out) -> epath.Path:
    """train_time_compute.png: held-out greedy accuracy against cumulative RL FLOPs (log axis)
    for each run, its fitted sigmoid (solid) and log-linear line (dotted), and with two or more
    runs the mean sigmoid and its 95% band; the SFT start (0 FLOPs) as a dashed level."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    trained = [c for r in runs for c, *_ in r.points if c > 0]
    grid = np.geomspace(min(trained) / 2, max(trained) * 2, 200) if trained else None
    for i, (r, s, ll) in enumerate(zip(runs, fits.sigmoid, fits.log_linear)):
        color = f"C{i}"
        pts = [(c, y) for c, y, *_ in r.points if c > 0]
        label = f"{r.workdir.name}"
        if pts:
            ax.plot(*zip(*pts), "o", color=color, ms=5, label=label)
        r0 = next((y for c, y, *_ in r.points if c == 0), None)
        if r0 is not None:
            ax.axhline(r0, color=color, ls="--", lw=0.8, alpha=0.6)
        if isinstance(s, scaling.SigmoidFit):
            ax.plot(grid, s(grid), "-", color=color, lw=1.2,
                    label=f"sigmoid: A={s.a:.3f} B={s.b:.2f} C_mid={s.c_mid:.2e}")
        if isinstance(ll, scaling.LogLinearFit):
            ax.plot(grid, ll(grid), ":", color=color, lw=1,
                    label=f"log-linear: {100 * ll.per_decade:+.1f} pts/decade, R2={ll.r2:.2f}")
    ok = [s for s in fits.sigmoid if isinstance(s, scaling.SigmoidFit)]
    if len(ok) >= 2:
        mean, lo, hi = scaling.band(ok, grid)
        ax.plot(grid, mean, "k-", lw=2, label=f"mean of {len(ok)} runs")
        ax.fill_between(grid, lo, hi, color="k", alpha=0.12, lw=0, label="95% band")
    ax.set_xscale("log")
    ax.set(xlabel="cumulative RL training FLOPs", ylabel="held-out greedy accuracy",
           title="train-time compute (dashed: the SFT start)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, out)


def plot_pass_at_k(curves: dict, out) -> epath.Path:
    """pass_at_k.png: pass@k against k (log axis) for each checkpoint (SFT, RL)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, pts in curves.items():
        ax.plot(*zip(*pts), "o-", label=label, ms=4)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="k (samples)", ylabel="pass@k, held-out", ylim=(0, 1.02),
           title="pass@k of the SFT and RL checkpoints")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, out)


def plot_training(rows: list[dict], out) -> epath.Path:
    """training.png: the RL metrics over iterations (reward, KL, entropy, response length,
    clip fraction, log-prob mismatch) and the time per iteration (split into phases where the
    run logs them)."""
    rl = [r for r in rows if r["stage"] == "rl"]
    fig, axes = plt.subplots(2, 4, figsize=(16, 6.4))
    x = [r["step"] for r in rl]
    for ax, (key, title) in zip(axes.flat, TRAINING_PANELS):
        ax.plot(x, [_num(r.get(key)) for r in rl])
        ax.set(title=title, xlabel="iteration")
        ax.grid(alpha=0.3)
    times = sorted({k for r in rl for k in r if k.startswith("time/") and k.endswith("_s")})
    ax = axes.flat[len(TRAINING_PANELS)]
    for key in times:
        ax.plot(x, [_num(r.get(key)) for r in rl], label=key[5:-2])
    ax.set(title="seconds per iteration", xlabel="iteration")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    sft = [r for r in rows if r["stage"] == "sft"]
    ax = axes.flat[len(TRAINING_PANELS) + 1]
    ax.plot([r["step"] for r in sft], [_num(r.get("loss")) for r in sft])
    ax.set(title="SFT loss", xlabel="step")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_thinking(rows: list[dict], held_out: list[tuple[int, float, float]],
                  by_length: tuple[str, list[dict]] | None, out) -> epath.Path:
    """thinking.png, a search task's run: the sampled responses' mean length (tokens) over RL
    iterations with the held-out greedy mean at each evaluation (``held_out``: (step, tokens,
    accuracy), ``curves.held_out_lengths``); the share of responses with a back-up, the share
    stuck and the back-ups per response; accuracy against response length: ``by_length``
    (``curves.accuracy_by_length``, 95% intervals) and the held-out evaluations."""
    rl = [r for r in rows if r["stage"] == "rl"]
    x = [r["step"] for r in rl]
    series = lambda key: [_num(r.get(key)) for r in rl]  # noqa: E731
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(x, series("response_length_mean"), label="sampled (RL)")
    axes[1].plot(x, series("search/backup_share"), label="share with a back-up")
    axes[1].plot(x, series("search/stuck_share"), label="share stuck (gave up)")
    twin = axes[1].twinx()
    twin.plot(x, series("search/backups_mean"), "k:", label="back-ups per response")
    twin.set(ylabel="back-ups per response", ylim=(0, None))
    twin.legend(fontsize=7, loc="upper right")
    if by_length:
        name, bins = by_length
        lo, hi, acc, ci_lo, ci_hi = (np.array([b[k] for b in bins]) for k in
                                     ("lo", "hi", "accuracy", "ci_low", "ci_high"))
        axes[2].errorbar((lo + hi) / 2, acc, xerr=(hi - lo) / 2, yerr=[acc - ci_lo, ci_hi - acc],
                         fmt="o", capsize=3, label=f"held-out responses ({name}), binned")
    if held_out:
        steps, tokens, accuracy = zip(*held_out)
        axes[0].plot(steps, tokens, "s--", label="held-out greedy")
        axes[2].plot(tokens, accuracy, "s--", label="held-out greedy, at RL step")
        for step, t, a in held_out:
            axes[2].annotate(str(step), (t, a), xytext=(3, 3), textcoords="offset points")
    axes[0].set(title="response length", xlabel="RL iteration", ylabel="tokens")
    axes[1].set(title="the search in sampled responses", xlabel="RL iteration", ylim=(0, 1.02))
    axes[2].set(title="accuracy against response length", xlabel="response tokens",
                ylabel="accuracy", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, out)


def png_bytes(pixels: np.ndarray) -> bytes:
    """An [H, W, 3] uint8 image as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def read_png(path) -> np.ndarray:
    """A PNG file (local or gs://) as [H, W, 3] uint8."""
    return np.asarray(Image.open(io.BytesIO(epath.Path(path).read_bytes())).convert("RGB"))


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")
