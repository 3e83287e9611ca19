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


def test_committed_page_is_what_the_committed_results_give():
    gpu = costs.read(costs.RESULTS / costs.GPU_FILE)
    assert costs.PAGE.read_text(encoding="utf-8") == costs.page(CPU, SCALING, gpu) + "\n"
    for ext in ("png", "pdf"):
        assert (costs.FIGURES / costs.FIGURE[0] / f"{costs.FIGURE[1]}.{ext}").stat().st_size > 1000


def test_results_carry_their_provenance_and_every_rule():
    for doc in (CPU, SCALING):
        env = doc["env"]
        keys = {"date", "commit", "dirty", "machine", "cpu", "threads", "torch", "load_before", "load_after"}
        assert keys <= set(env)
        assert env["load_before"]["uptime"] and len(env["load_before"]["loadavg"]) == 3
    rules = {r["rule"] for r in CPU["rows"]}
    assert set(overhead.fabook.RULES) | {"torch"} <= rules
    assert {"mlp", "resnet20"} == {r["model"] for r in CPU["rows"]}
    assert {r["width"] for r in SCALING["rows"]} >= {256, 1000, 2000}


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
