"""The run report: WORKDIR/report.png from metrics.jsonl and the evaluation files."""

from __future__ import annotations

import io
import json
import math

import matplotlib
from etils import epath

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_run(workdir, out=None) -> epath.Path:
    """SFT loss, RL reward per iteration, and the held-out accuracies, in one PNG (``workdir``
    and ``out`` local or gs://)."""
    workdir = epath.Path(workdir)
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    sft = [r for r in rows if r["stage"] == "sft"]
    rl = [r for r in rows if r["stage"] == "rl"]
    evals = {}
    for name in ("sft", "rl"):
        path = workdir / f"eval_{name}.json"
        if path.exists():
            evals[name] = json.loads(path.read_text())
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
    return _save(fig, out or workdir / "report.png")


def _save(fig, out) -> epath.Path:
    """The figure as a PNG at ``out`` (local or gs://)."""
    out = epath.Path(out)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    out.write_bytes(buf.getvalue())
    return out


def print_table(result: dict, maj_k: int) -> None:
    """The run's headline figures (a run's summary dict) as a small table on stdout."""
    rows = [("held-out greedy accuracy after SFT", result.get("sft_accuracy")),
            ("held-out greedy accuracy after RL", result.get("rl_accuracy")),
            (f"held-out maj@{maj_k} accuracy after RL", result.get(f"rl_maj{maj_k}_accuracy"))]
    width = max(len(r[0]) for r in rows)
    print("-" * (width + 10))
    for name, v in rows:
        print(f"{name:<{width}}  {'-' if v is None else f'{100 * v:5.1f}%'}")
    print("-" * (width + 10))


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
    return _save(fig, out)


def _rl_rows(workdir) -> list[dict]:
    path = epath.Path(workdir) / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["stage"] == "rl"]


def plot_selfplay(workdir, out=None) -> epath.Path:
    """selfplay.png from a self-play run's metrics: the proposals' and the buffer's difficulty,
    their diversity, and what the referee accepted and rejected, over iterations."""
    rows = _rl_rows(workdir)
    x = [r["step"] for r in rows]

    def series(key):
        return [float(r.get(key, "nan")) for r in rows]
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
    return _save(fig, out or epath.Path(workdir) / "selfplay.png")
