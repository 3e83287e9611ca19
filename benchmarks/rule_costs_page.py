"""The book page "What each rule costs" (``book/rule_costs.md``) and its figure, from the benchmark's results.

Reads the results files that ``benchmarks/rule_overhead.py --json`` wrote into ``benchmarks/results/``:

- ``rule_overhead_cpu.json`` and ``rule_overhead_cpu_all_cores.json``: the MLP and the ResNet on the CPU with
  one torch thread and with torch's default, every core (the page's tables);
- ``rule_overhead_cpu_scaling.json`` and ``rule_overhead_cpu_scaling_all_cores.json``: the MLP at several
  widths and batch sizes, at one thread and on all cores (the figures);
- ``rule_overhead_cuda.json``, when one has been recorded on a GPU: the same tables, labelled with the device.

It writes the Markdown page and ``book/figures/rule_costs/cost_vs_size*.{png,pdf}`` (through
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
ALL_CORES = {"cpu": "rule_overhead_cpu_all_cores.json", "scaling": "rule_overhead_cpu_scaling_all_cores.json"}
"""The same runs with torch's default thread count (every core); their figure's name ends ALL_CORES_SUFFIX."""
ALL_CORES_SUFFIX = "_all_cores"
TARGET_RULES = ("fa", "usf", "frsf", "sc", "brsf", "kp")
"""The rules the targets table follows (the FA family, brSF and KP; the per-run tables have every rule)."""
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


def _steps(doc: dict) -> str:
    """Plain torch's timed steps per repeat, by model (a far slower variant runs fewer)."""
    main = [r for r in doc["rows"] if r["rule"] == "torch" and r["study"] == "main"]
    steps = [f"{r['steps']} ({r['model']})" for r in main]
    return f" of {', '.join(steps)} timed steps" if steps else ""


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
            f"{settings['repeats']} interleaved repeats{_steps(doc)}, paired ratios; "
            f"{env['seconds']:.0f} s in all",
        ),
        ("load (`uptime`) before", load[0] or "not recorded"),
        ("load (`uptime`) after", load[1] or "not recorded"),
    ]
    lines = [f"| {label} | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines)


def _ms(row: dict) -> float:
    """Milliseconds per step on the clock the ratio uses (CPU time on a shared CPU, else wall time)."""
    return row["cpu_ms"] if row["clock"] == "cpu" else row["ms"]


def _floor_ratio(rows: list[dict]) -> float | None:
    floor = next((r for r in rows if r["rule"] == "floor:kp"), None)
    return None if floor is None else floor["ratio"]


def target_text(r: dict, floor: float | None) -> str:
    """``r``'s target and whether it was met; KP's is a multiple of its floor's ratio (same run)."""
    if r["target"] is None:
        return "—"
    verdict = decided(r["ratio"], r["paired_ratio"], r["target"])
    if r.get("target_of") == "floor" and floor:
        return f"≤ {r['target'] / floor:.2f} × floor = {r['target']:.2f}×: {verdict}"
    return f"≤ {r['target']:.2f}×: {verdict}"


def decided(ratio: float, quartiles: list[float], target: float) -> str:
    """Whether ``ratio`` (of medians) meets ``target`` as far as one run can tell: *met* or *missed* when the
    paired ratios' interquartile range lies on one side of it, else *not decided*, with the medians' side."""
    q1, _, q3 = quartiles
    if q3 <= target:
        return "met"
    if q1 > target:
        return "**missed**"
    return "not decided (medians: " + ("met" if ratio <= target else "missed") + ")"


def versus_biotorch(r: dict) -> str:
    """fabook's step time over BioTorch's for the same rule, in the same rounds (— when not timed)."""
    if r.get("vs_biotorch") is None:
        return "—"
    q1, q2, q3 = r["vs_biotorch_paired"]
    return f"{r['vs_biotorch']:.2f}× (paired {q2:.2f} [{q1:.2f}–{q3:.2f}])"


def _cost_row(label: str, r: dict, bio: dict | None, floor: float | None) -> str:
    """One table line: ``r``'s ratios, time, target and memory, beside BioTorch's ``bio`` (None: a dash)."""
    cells = [
        label, _ratio(r), _ratio(bio) if bio else "—", versus_biotorch(r), f"{_ms(r):.1f}",
        target_text(r, floor), f"{r['mem_mb']:.1f}", f"{r['mem_ratio']:.2f}×", f"{r['step_mem_ratio']:.2f}×",
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def cost_table(rows: list[dict]) -> str:
    """One model's rules: fabook's and BioTorch's step-time ratio to plain torch, time, memory, target."""
    base = next(r for r in rows if r["rule"] == "torch")
    bio = {r["rule"].partition(":")[2]: r for r in rows if r["rule"].startswith("biotorch:")}
    floor = _floor_ratio(rows)
    head = (
        "| rule | step time vs torch: fabook | BioTorch | fabook ÷ BioTorch | fabook ms/step (ratio's clock) "
        "| target | peak memory MB | memory vs torch | step-only memory |"
    )
    lines = [head, "|" + "---|" * 9]
    lines.append(
        f"| plain torch | 1.00× | — | — | {_ms(base):.1f} | — | {base['mem_mb']:.1f} | 1.00× | 1.00× |"
    )
    for r in sorted(
        (r for r in rows if r["rule"] != "torch" and ":" not in r["rule"]), key=lambda r: _order(r["rule"])
    ):
        lines.append(_cost_row(r["rule"], r, bio.get(r["rule"]), floor))
    floor_row = next((r for r in rows if r["rule"] == "floor:kp"), None)
    if floor_row is not None:
        lines.append(_cost_row("KP's floor: torch + B's optimizer update", floor_row, None, floor))
    return "\n".join(lines)


def _threads(doc: dict) -> str:
    n = doc["env"]["threads"]
    return f"{n} thread" + ("s" if n != 1 else "")


def targets_table(docs: list[dict]) -> str:
    """Per model and rule of :data:`TARGET_RULES`: the ratio and its target in each run of ``docs`` (one
    thread, all cores), and — for the rules BioTorch has — fabook's time over BioTorch's."""
    head = ["model", "rule"]
    for doc in docs:
        head += [f"{_threads(doc)}: vs torch, target", f"{_threads(doc)}: fabook ÷ BioTorch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in dict.fromkeys(r["model"] for r in docs[0]["rows"] if r["study"] == "main"):
        for rule in TARGET_RULES:
            cells = [model, rule]
            for doc in docs:
                rows = [r for r in doc["rows"] if r["study"] == "main" and r["model"] == model]
                r = next((r for r in rows if r["rule"] == rule), None)
                if r is None:
                    cells += ["not timed", "—"]
                    continue
                versus = versus_biotorch(r)
                if rule == "fa" and r.get("vs_biotorch") is not None:  # fabook's FA no slower than BioTorch's
                    versus += ", ≤ 1.00×: " + decided(r["vs_biotorch"], r["vs_biotorch_paired"], 1.0)
                q1, _, q3 = r["paired_ratio"]
                target = target_text(r, _floor_ratio(rows))
                cells += [f"{r['ratio']:.3f}× [{q1:.2f}–{q3:.2f}], {target}", versus]
            lines.append("| " + " | ".join(cells) + " |")
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


def _label(rule: str, library: str) -> str:
    return rule if library == "fabook" else f"{rule} (BioTorch)"


def labelled(doc: dict):
    """:func:`scaling_frame` with each row's series label (``brsf``, ``brsf (BioTorch)``)."""
    frame = scaling_frame(doc)
    return frame.assign(label=[_label(r, lib) for r, lib in zip(frame.rule, frame.library, strict=True)])


def left_out(doc: dict) -> list[str]:
    """Series (a rule in one library) far costlier than the rest — PFA with k = 10, BioTorch's brSF: in the
    tables, not in the figure."""
    top = labelled(doc).groupby(["rule", "library"])["ratio"].max()
    keys = sorted(top[top > FIGURE_MAX_RATIO].index, key=lambda k: (_order(k[0]), k[1] != "fabook"))
    return [_label(rule, library) for rule, library in keys]


def figure(doc: dict):
    """Ratio to plain torch against hidden width (batch 128) and against batch size (width 1000)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import FuncFormatter

    frame = labelled(doc)
    frame = frame[~frame.label.isin(left_out(doc))]
    env = doc["env"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    rules = sorted(frame.rule.unique(), key=_order)
    colors = dict(zip(rules, sns.color_palette("husl", len(rules)), strict=True))
    for ax, (x, fixed, value) in zip(axes, [("width", "batch", 128), ("batch", "width", 1000)], strict=True):
        part = frame[frame[fixed] == value]
        for (rule, library), line in part.groupby(["rule", "library"], sort=False):
            line = line.sort_values(x)
            style = "-o" if library == "fabook" else "--x"
            ax.plot(
                line[x], line["ratio"], style, color=colors[rule], label=_label(rule, library), markersize=4
            )
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
    frame = labelled(doc)
    names = left_out(doc)
    if not names:
        return ""
    part = frame[frame.label.isin(names)]["ratio"]
    return (
        f"Not drawn: {', '.join(names)}, each above {FIGURE_MAX_RATIO:g}× plain torch at some of these sizes "
        f"(up to {part.max():.0f}×; their MLP numbers are in the tables above)."
    )


def _load_text(doc: dict) -> str:
    """The machine's load at the start and the end of a run, and whether other jobs shared it."""
    env = doc["env"]
    loads = [env.get(k, {}).get("loadavg") for k in ("load_before", "load_after")]
    text = f"load average {' and '.join(f'{lo[0]:.1f}' for lo in loads if lo)} on {env['cores']} cores"
    if max((lo[0] for lo in loads if lo), default=0.0) > env["cores"]:
        text += " — shared with other jobs" + (
            ": on one thread the CPU-time clock is little disturbed by them" if env["threads"] == 1 else ""
        )
    return text


def _figure_section(doc: dict | None, name: str) -> list[str]:
    if doc is None:
        return []
    env = doc["env"]
    uptime, commit = (env.get("load_before") or {}).get("uptime"), (env.get("commit") or "unknown")[:10]
    return [
        f"```{{figure}} figures/{FIGURE[0]}/{name}.png",
        f":name: {name}",
        "",
        f"Train-step time of each rule divided by plain torch's with {_threads(doc)}, for the MLP at growing "
        "hidden width (left, batch 128) and batch size (right, width 1000); dashed: BioTorch. Log-scaled "
        f"width and batch. {_left_out_text(doc)}",
        "```",
        "",
        f"Recorded {env['date']} on {env['cpu']} ({_threads(doc)}, load `{uptime}` at the start), commit "
        f"{commit}; {doc['settings']['repeats']} repeats of "
        f"{doc['settings']['steps'] or 'the default number of'} steps. Figure as "
        f"{{download}}`PDF <figures/{FIGURE[0]}/{name}.pdf>`.",
        "",
    ]


def page(
    cpu: dict,
    scaling: dict | None,
    gpu: dict | None,
    all_cores: dict | None = None,
    scaling_all_cores: dict | None = None,
) -> str:
    """The Markdown page: the CPU at one thread (``cpu``, ``scaling``) and on all cores (``all_cores``,
    ``scaling_all_cores``; sections left out when not recorded), and the GPU."""
    runs = [cpu] + ([all_cores] if all_cores is not None else [])
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
        "from its results files. Each CPU run is made twice: with one torch thread, where the ratios say "
        "how much work a rule adds, and with torch's default thread count — every core, as a user trains — "
        "where what does not run in parallel (a random draw, a rule's fixed costs per layer) weighs more, "
        "since the matrix products get faster and it does not.",
        "",
        "**How to read a ratio.** Each variant's steps are timed in interleaved rounds (a fresh random "
        "order each round). A ratio is the median step time of the rule over the rounds divided by plain "
        "torch's, which decides a target; *paired* is the median over rounds of `t_rule / t_torch` measured "
        "in the same round, with its interquartile range in brackets: how far to trust the ratio. "
        "*fabook ÷ BioTorch* is the same for fabook's rule over BioTorch's. A ratio within its bracket of a "
        "target is not decided by one run: a target reads *met* or *missed* only when the whole bracket lies "
        "on one side of it, else *not decided*, with the side the ratio of medians falls on. The targets "
        "table gives each ratio with its paired bracket.",
        "",
        "## On the CPU",
        "",
        "### Targets",
        "",
        "The FA family (FA, uSF, frSF, partial sign concordance) at most 1.10× plain torch, brSF (a "
        "weight-sized random draw every batch) at most 1.15×, KP within 5 % of its floor (below), and "
        "fabook's FA no slower than BioTorch's; each run's full table follows.",
        "",
        targets_table(runs),
        "",
    ]
    for doc in runs:
        env = doc["env"]
        title = "One thread" if env["threads"] == 1 else f"All cores ({_threads(doc)})"
        out += [
            f"### {title}",
            "",
            f"Machine: {_load_text(doc)}.",
            "",
            provenance(doc, "CPU run"),
            "",
            tables(doc),
            "",
        ]
    if all_cores is None:
        out += ["No run on all cores is recorded (`rule_overhead.py` without `--threads`).", ""]
    out += [
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
    if scaling is None and scaling_all_cores is None:
        out += ["No scaling run is recorded (`rule_overhead.py --scaling`).", ""]
    out += _figure_section(scaling, FIGURE[1])
    out += _figure_section(scaling_all_cores, FIGURE[1] + ALL_CORES_SUFFIX)
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
    all_cores, scaling_all = (read(args.results / ALL_CORES[k]) for k in ("cpu", "scaling"))
    args.page.write_text(page(cpu, scaling, gpu, all_cores, scaling_all) + "\n", encoding="utf-8")
    os.environ["FABOOK_FIGURES"] = str(args.figures)  # save_figure's folder: the page's, in book/
    from fabook.notebook import save_figure

    for doc, name in ((scaling, FIGURE[1]), (scaling_all, FIGURE[1] + ALL_CORES_SUFFIX)):
        if doc is not None:
            save_figure(figure(doc), FIGURE[0], name)
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
