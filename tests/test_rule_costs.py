"""The benchmark's results file and the page "What each rule costs" built from it."""

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


overhead, costs = _load("rule_overhead"), _load("rule_costs_page")
CPU = json.loads((costs.RESULTS / costs.FILES["cpu"]).read_text())
SCALING = json.loads((costs.RESULTS / costs.FILES["scaling"]).read_text())
ALL = json.loads((costs.RESULTS / costs.ALL_CORES["cpu"]).read_text())
SCALING_ALL = json.loads((costs.RESULTS / costs.ALL_CORES["scaling"]).read_text())


def test_committed_page_is_what_the_committed_results_give():
    gpu = costs.read(costs.RESULTS / costs.GPU_FILE)
    assert costs.PAGE.read_text(encoding="utf-8") == costs.page(CPU, SCALING, gpu, ALL, SCALING_ALL) + "\n"
    for name in (costs.FIGURE[1], costs.FIGURE[1] + costs.ALL_CORES_SUFFIX):
        for ext in ("png", "pdf"):
            assert (costs.FIGURES / costs.FIGURE[0] / f"{name}.{ext}").stat().st_size > 1000


def test_the_page_shows_each_run_labelled_with_its_threads_and_the_targets_of_both():
    text = costs.page(CPU, SCALING, None, ALL, SCALING_ALL)
    assert CPU["env"]["threads"] == 1 and ALL["env"]["threads"] == ALL["env"]["cores"] > 1
    assert "### One thread" in text and f"### All cores ({ALL['env']['cores']} threads)" in text
    assert text.count("| KP's floor: torch + B's optimizer update |") == 4  # two models, two runs
    targets = text.split("### Targets")[1].split("### One thread")[0]
    assert "1 thread: vs torch, target" in targets and f"{ALL['env']['cores']} threads: vs torch" in targets
    kp = next(line for line in targets.splitlines() if line.startswith("| mlp | kp |"))
    assert kp.count("× floor =") == 2  # KP's target: a multiple of its floor's ratio, in both runs
    fa = next(line for line in targets.splitlines() if line.startswith("| mlp | fa |"))
    assert fa.count("≤ 1.00×: ") == 2  # fabook's FA against BioTorch's, in both runs
    only_one = costs.page(CPU, SCALING, None)
    assert "No run on all cores is recorded" in only_one and "### All cores" not in only_one


def test_kp_target_reads_as_a_multiple_of_its_floor():
    row = dict(target=1.26, ratio=1.3, paired_ratio=[1.28, 1.3, 1.33], target_of="floor")
    assert costs.target_text(row, 1.2) == "≤ 1.05 × floor = 1.26×: **missed**"
    row = dict(target=1.1, ratio=1.05, paired_ratio=[1.03, 1.05, 1.08])
    assert costs.target_text(row, None) == "≤ 1.10×: met"


def test_a_target_inside_the_paired_bracket_is_not_decided():
    assert costs.decided(1.09, [1.05, 1.09, 1.12], 1.10) == "not decided (medians: met)"
    assert costs.decided(1.11, [1.08, 1.10, 1.13], 1.10) == "not decided (medians: missed)"
    assert costs.decided(1.02, [0.99, 1.01, 1.10], 1.10) == "met"  # the bracket's top on the target
    assert costs.decided(1.2, [1.101, 1.2, 1.3], 1.10) == "**missed**"


def test_results_carry_their_provenance_and_every_rule():
    for doc in (CPU, SCALING, ALL, SCALING_ALL):
        env = doc["env"]
        keys = {"date", "commit", "dirty", "machine", "cpu", "threads", "torch", "load_before", "load_after"}
        assert keys <= set(env)
        assert env["load_before"]["uptime"] and len(env["load_before"]["loadavg"]) == 3
    for doc, scaling in ((CPU, SCALING), (ALL, SCALING_ALL)):
        rules = {r["rule"] for r in doc["rows"]}
        assert set(overhead.fabook.RULES) | {"torch", "floor:kp"} <= rules
        assert {"mlp", "resnet20"} == {r["model"] for r in doc["rows"]}
        assert {r["width"] for r in scaling["rows"]} >= {256, 1000, 2000}
        assert doc["env"]["threads"] == scaling["env"]["threads"]


def test_gpu_section_shows_a_recorded_file_labelled_with_its_device():
    text = costs.page(CPU, SCALING, None)
    assert "GPU numbers are not yet recorded" in text and "rule_overhead_cuda.json" in text
    gpu = copy.deepcopy(CPU)
    gpu["env"]["cuda"] = "NVIDIA Example 80GB"
    text = costs.page(CPU, SCALING, gpu)
    assert "not yet recorded" not in text
    assert "Recorded on **NVIDIA Example 80GB**." in text and "| device | NVIDIA Example 80GB |" in text


def test_page_without_biotorch_says_so():
    doc = copy.deepcopy(CPU)
    doc["rows"] = [r for r in doc["rows"] if not r["rule"].startswith("biotorch:")]
    doc["env"]["biotorch"] = None
    text = costs.page(doc, None, None)
    assert "| BioTorch | not installed: not timed |" in text
    assert "No scaling run is recorded" in text
    fa = next(line for line in text.splitlines() if line.startswith("| fa |"))
    assert fa.split(" | ")[2] == "—"


def test_benchmark_skips_biotorch_when_it_is_absent(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "biotorch" else real(n, *a))
    assert overhead.parse_args([]).biotorch is False
    with pytest.raises(SystemExit):
        overhead.parse_args(["--biotorch", "yes"])


def test_a_tiny_run_writes_rows_and_provenance(tmp_path):
    out = tmp_path / "r.json"
    argv = ["--device", "cpu", "--models", "", "--rules", "fa,kp", "--scaling", "--widths", "16"]
    argv += ["--batches", "", "--repeats", "2", "--steps", "1", "--warmup", "1", "--json", str(out)]
    overhead.main(argv)
    doc = json.loads(out.read_text())
    rows = {(r["rule"], r["width"], r["study"]) for r in doc["rows"]}
    bio = {("biotorch:fa", 16, "scaling")} if doc["settings"]["biotorch"] else set()
    assert rows == {("torch", 16, "scaling"), ("fa", 16, "scaling"), ("kp", 16, "scaling")} | bio
    assert doc["env"]["commit"] and doc["env"]["date"] and doc["env"]["load_after"]["uptime"]


def test_kp_is_judged_against_its_floor_and_fa_against_biotorch_in_the_same_run(tmp_path):
    out = tmp_path / "r.json"
    argv = ["--device", "cpu", "--models", "mlp", "--rules", "fa,kp", "--repeats", "2", "--steps", "1"]
    overhead.main([*argv, "--warmup", "1", "--threads", "1", "--json", str(out)])
    rows = {r["rule"]: r for r in json.loads(out.read_text())["rows"]}
    kp, floor = rows["kp"], rows["floor:kp"]
    assert kp["target_of"] == "floor" and kp["target"] == pytest.approx(
        overhead.KP_FLOOR_TARGET * floor["ratio"]
    )
    assert kp["passed"] == (kp["ratio"] <= kp["target"])
    if "biotorch:fa" in rows:
        bio = rows["biotorch:fa"]
        assert rows["fa"]["vs_biotorch"] == pytest.approx(rows["fa"]["cpu_ms"] / bio["cpu_ms"])
    else:
        assert rows["fa"]["vs_biotorch"] is None
