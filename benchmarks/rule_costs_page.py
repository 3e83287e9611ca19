"""The book page "What each rule costs" (``book/rule_costs.md``) and its figure, from the benchmark's results.

Reads the results files that ``benchmarks/rule_overhead.py --json`` wrote into ``benchmarks/results/``:

- ``rule_overhead_cpu.json``: the MLP and the ResNet on the CPU (the page's main tables);
- ``rule_overhead_cpu_scaling.json``: the MLP at several widths and batch sizes (the figure);
- ``rule_overhead_cuda.json``, when one has been recorded on a GPU: the same tables, labelled with the device.

It writes the Markdown page and ``book/figures/rule_costs/cost_vs_size.{png,pdf}`` (through
:func:`fabook.notebook.save_figure`). Every number on the page comes from those files; run this again after
a new benchmark run::

    python benchmarks/rule_costs_page.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's fabook

RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "book" / "rule_costs.md"
FIGURES = ROOT / "book" / "figures"
FIGURE = ("rule_costs", "cost_vs_size")
FILES = {"cpu": "rule_overhead_cpu.json", "scaling": "rule_overhead_cpu_scaling.json"}
GPU_FILE = "rule_overhead_cuda.json"
FIGURE_MAX_RATIO = 3.0
"""Rules whose ratio exceeds this somewhere are left out of the figure (so that the others can be read)."""
RULE_ORDER = ("bp", "fa", "dfa", "usf", "brsf", "frsf", "sc", "wm", "kp", "pfa-o", "pfa", "sparse-pfa")
MODEL_NAMES = {
    "mlp": "MLP 784-{width:g}-{width:g}-10, batch {batch}",
    "resnet20": "CIFAR ResNet-20 (channel multiplier {width:g}), batch {batch}, 3×32×32",
}
GPU_COMMAND = (
    "python benchmarks/rule_overhead.py --device cuda --json benchmarks/results/rule_overhead_cuda.json\n"
    "python benchmarks/rule_costs_page.py"
)


def read(path: Path) -> dict | None:
    """A results file, or None when there is none."""
    return json.loads(path.read_text()) if path.is_file() else None


def _order(rule: str) -> tuple[int, str]:
    return (RULE_ORDER.index(rule) if rule in RULE_ORDER else len(RULE_ORDER), rule)


def _ratio(row: dict) -> str:
    q1, q2, q3 = row["paired_ratio"]
    return f"{row['ratio']:.2f}× (paired {q2:.2f} [{q1:.2f}–{q3:.2f}])"


def provenance(doc: dict, label: str) -> str:
    """The table saying where a results file's numbers come from."""
    env, settings = doc["env"], doc["settings"]
    commit = (env.get("commit") or "unknown")[:10] + (
        " (with uncommitted changes)" if env.get("dirty") else ""
    )
    load = [env.get("load_before", {}).get("uptime"), env.get("load_after", {}).get("uptime")]
    device = env.get("cuda") or f"{env['cpu']}, {env['cores']} cores"
    rows = [
        ("recorded", env["date"]),
        ("device", device),
        ("machine", env["machine"]),
        ("torch threads", env["threads"]),
        ("commit", commit),
        ("torch / Python", f"{env['torch']} / {env['python']}"),
        ("BioTorch", env.get("biotorch") or "not installed: not timed"),
        (
            "timing",
            f"{settings['repeats']} interleaved repeats, paired ratios; {env['seconds']:.0f} s in all",
        ),
        ("load (`uptime`) before", load[0] or "not recorded"),
        ("load (`uptime`) after", load[1] or "not recorded"),
    ]
    lines = [f"| {label} | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines)


def _ms(row: dict) -> float:
    """Milliseconds per step on the clock the ratio uses (CPU time on a shared CPU, else wall time)."""
    return row["cpu_ms"] if row["clock"] == "cpu" else row["ms"]


def _cost_row(label: str, r: dict, bio: dict | None) -> str:
    """One table line: ``r``'s ratios, time, target and memory, beside BioTorch's ``bio`` (None: a dash)."""
    target = "—" if r["target"] is None else f"≤ {r['target']:.2f}×: {'met' if r['passed'] else '**missed**'}"
    cells = [
        label, _ratio(r), _ratio(bio) if bio else "—", f"{_ms(r):.1f}", target, f"{r['mem_mb']:.1f}",
        f"{r['mem_ratio']:.2f}×", f"{r['step_mem_ratio']:.2f}×",
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def cost_table(rows: list[dict]) -> str:
    """One model's rules: fabook's and BioTorch's step-time ratio to plain torch, time, memory, target."""
    base = next(r for r in rows if r["rule"] == "torch")
    bio = {r["rule"].partition(":")[2]: r for r in rows if r["rule"].startswith("biotorch:")}
    head = (
        "| rule | step time vs torch: fabook | BioTorch | fabook ms/step (ratio's clock) | target "
        "| peak memory MB | memory vs torch | step-only memory |"
    )
    lines = [head, "|" + "---|" * 8]
    lines.append(f"| plain torch | 1.00× | — | {_ms(base):.1f} | — | {base['mem_mb']:.1f} | 1.00× | 1.00× |")
    for r in sorted(
        (r for r in rows if r["rule"] != "torch" and ":" not in r["rule"]), key=lambda r: _order(r["rule"])
    ):
        lines.append(_cost_row(r["rule"], r, bio.get(r["rule"])))
    floor = next((r for r in rows if r["rule"] == "floor:kp"), None)
    if floor is not None:
        lines.append(_cost_row("KP's floor: torch + B's optimizer update", floor, None))
    return "\n".join(lines)


def tables(doc: dict) -> str:
    """A section per model of the file's main study."""
    parts = []
    for model in dict.fromkeys(r["model"] for r in doc["rows"] if r["study"] == "main"):
        rows = [r for r in doc["rows"] if r["study"] == "main" and r["model"] == model]
        title = MODEL_NAMES.get(model, model).format(width=rows[0]["width"], batch=rows[0]["batch"])
        clock = {"cpu": "this process's CPU time", "wall": "wall time"}[rows[0]["clock"]]
        parts.append(f"### {title}\n\nClock: {clock}.\n\n{cost_table(rows)}")
    return "\n\n".join(parts)


def scaling_frame(doc: dict):
    """The scaling rows as a table: rule, library, width, batch, paired median ratio."""
    import pandas as pd

    rows = []
    for r in doc["rows"]:
        if r["study"] != "scaling" or r["rule"] == "torch":
            continue
        library, _, rule = r["rule"].rpartition(":")
        rows.append(dict(rule=rule, library=library or "fabook", width=r["width"], batch=r["batch"],
                         ratio=r["paired_ratio"][1]))  # fmt: skip
    return pd.DataFrame(rows)


def left_out(doc: dict) -> list[str]:
    """Rules far costlier than the rest (PFA with k = 10): in the tables, not in the figure."""
    frame = scaling_frame(doc)
    top = frame.groupby("rule")["ratio"].max()
    return sorted(top[top > FIGURE_MAX_RATIO].index, key=_order)


def figure(doc: dict):
    """Ratio to plain torch against hidden width (batch 128) and against batch size (width 1000)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import FuncFormatter

    frame = scaling_frame(doc)
    frame = frame[~frame.rule.isin(left_out(doc))]
    env = doc["env"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    rules = sorted(frame.rule.unique(), key=_order)
    colors = dict(zip(rules, sns.color_palette("husl", len(rules)), strict=True))
    for ax, (x, fixed, value) in zip(axes, [("width", "batch", 128), ("batch", "width", 1000)], strict=True):
        part = frame[frame[fixed] == value]
        for (rule, library), line in part.groupby(["rule", "library"], sort=False):
            line = line.sort_values(x)
            style = "-o" if library == "fabook" else "--x"
            label = rule if library == "fabook" else f"{rule} (BioTorch)"
            ax.plot(line[x], line["ratio"], style, color=colors[rule], label=label, markersize=4)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(part[x].unique()), [f"{v:g}" for v in sorted(part[x].unique())])
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.set_xlabel("hidden width (units per layer)" if x == "width" else "batch size")
        ax.set_title(f"MLP 784-w-w-10, {fixed} {value}")
    axes[0].set_ylabel("train-step time / plain torch's (paired median)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="rule", loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    threads = f"{env['threads']} thread" + ("s" if env["threads"] != 1 else "")
    fig.suptitle(f"Cost of each rule as the MLP grows (CPU: {env['cpu']}, {threads}, {env['date'][:10]})")
    fig.tight_layout()
    return fig


def _left_out_text(doc: dict) -> str:
    frame = scaling_frame(doc)
    names = left_out(doc)
    if not names:
        return ""
    part = frame[frame.rule.isin(names)]["ratio"]
    return (
        f"Not drawn: {', '.join(names)}, at {part.min():.0f}–{part.max():.0f}× plain torch over these sizes "
        f"(above {FIGURE_MAX_RATIO:g}×; their MLP numbers are in the table above)."
    )


def page(cpu: dict, scaling: dict | None, gpu: dict | None) -> str:
    """The Markdown page."""
    env = cpu["env"]
    loads = [env.get(k, {}).get("loadavg") for k in ("load_before", "load_after")]
    load = " and ".join(f"{lo[0]:.1f}" for lo in loads if lo)
    out = [
        "<!-- Generated by benchmarks/rule_costs_page.py from benchmarks/results/*.json: do not edit. -->",
        "# What each rule costs",
        "",
        "A learning rule replaces what a layer sends down in the backward pass, so it changes the cost of a "
        "training step. This page gives that cost, measured: the time and the peak memory of one full train "
        "step (forward, cross-entropy, backward, SGD with momentum and weight decay) of every rule, as a "
        "ratio to the same model built from plain `torch.nn` layers, and to the same rules in "
        "[BioTorch](https://github.com/jsalbert/biotorch) where it has them. The numbers come from "
        "`benchmarks/rule_overhead.py` (how it measures: `benchmarks/README.md`); this page is generated "
        "from its results files.",
        "",
        "**How to read a ratio.** Each variant's steps are timed in interleaved rounds (a fresh random "
        "order each round). A ratio is the median step time of the rule over the rounds divided by plain "
        "torch's, which decides a target; *paired* is the median over rounds of `t_rule / t_torch` measured "
        "in the same round, with its interquartile range in brackets: how far to trust the ratio. "
        f"Load average on the machine at the start and the end of the CPU run: {load} on {env['cores']} "
        "cores"
        + (
            " — it was shared with other jobs: on one thread the CPU-time clock is little disturbed by them"
            if max((lo[0] for lo in loads if lo), default=0.0) > env["cores"]
            else ""
        )
        + ". A ratio within its bracket of a target is not decided by one run.",
        "",
        "## On the CPU",
        "",
        provenance(cpu, "CPU run"),
        "",
        tables(cpu),
        "",
        "*KP's floor* (where shown): plain `torch.nn` layers whose every weight has a twin that gets a "
        "copy of the weight's gradient and its own optimizer update — KP's `B` without the rule layer. Any "
        "KP whose `B` is updated by the optimizer, as the rule says, costs at least this.",
        "",
        "*Memory*: everything the model holds during a step (parameters, buffers, optimizer state, the "
        "step's own peak) against plain torch — it includes a rule's feedback state, such as FA's `B` — and, "
        "*step-only*, the step's own peak (activations, gradients, temporaries).",
        "",
        "## How the cost grows with width and batch",
        "",
    ]
    if scaling is None:
        out += ["No scaling run is recorded (`rule_overhead.py --scaling`).", ""]
    else:
        senv = scaling["env"]
        out += [
            f"```{{figure}} figures/{FIGURE[0]}/{FIGURE[1]}.png",
            f":name: {FIGURE[1]}",
            "",
            "Train-step time of each rule divided by plain torch's, for the MLP at growing hidden width "
            "(left, batch 128) and batch size (right, width 1000); dashed: BioTorch. Log-scaled width and "
            f"batch. {_left_out_text(scaling)}",
            "```",
            "",
            f"Recorded {senv['date']} on {senv['cpu']} ({senv['threads']} torch thread(s), load "
            f"`{(senv.get('load_before') or {}).get('uptime')}` at the start), commit "
            f"{(senv.get('commit') or 'unknown')[:10]}; {scaling['settings']['repeats']} repeats of "
            f"{scaling['settings']['steps'] or 'the default number of'} steps. Figure as "
            f"{{download}}`PDF <figures/{FIGURE[0]}/{FIGURE[1]}.pdf>`.",
            "",
        ]
    out += ["## On a GPU", ""]
    if gpu is None:
        out += [
            "GPU numbers are not yet recorded: no GPU was at hand when this page was made. Once they are, "
            "this section shows them, labelled with the device. To record them on a machine with CUDA:",
            "",
            "```bash",
            GPU_COMMAND,
            "```",
            "",
        ]
    else:
        out += [f"Recorded on **{gpu['env']['cuda']}**.", "", provenance(gpu, "GPU run"), "", tables(gpu), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the results files")
    p.add_argument("--page", type=Path, default=PAGE, help="where the page goes")
    p.add_argument("--figures", type=Path, default=FIGURES, help="where the figure goes")
    args = p.parse_args(argv)
    cpu = read(args.results / FILES["cpu"])
    if cpu is None:
        p.error(f"no {args.results / FILES['cpu']}: run benchmarks/rule_overhead.py --json first")
    scaling, gpu = read(args.results / FILES["scaling"]), read(args.results / GPU_FILE)
    args.page.write_text(page(cpu, scaling, gpu) + "\n", encoding="utf-8")
    if scaling is not None:
        os.environ["FABOOK_FIGURES"] = str(args.figures)  # save_figure's folder: the page's, in book/
        from fabook.notebook import save_figure

        save_figure(figure(scaling), *FIGURE)
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
