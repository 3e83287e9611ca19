"""What cannot run here, checked as files: the GitHub workflows, the site's address and badges in the README,
the release metadata, CI's script and its pins check, and `make book`'s data step."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import fabook
from fabook import site

ROOT = Path(fabook.__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def workflow(name: str) -> dict:
    flow = yaml.safe_load((WORKFLOWS / name).read_text())
    flow["on"] = flow.pop(True, flow.get("on"))  # YAML 1.1 reads the key `on` as true
    return flow


def runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def uses(job: dict, action: str) -> dict:
    found = [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]
    assert len(found) == 1, f"{action} in {job['steps']}"
    return found[0]


def repo_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def test_the_test_workflow_runs_ci_on_every_push_and_pull_request() -> None:
    flow = workflow("test.yml")
    assert set(flow["on"]) == {"push", "pull_request"} and not any(flow["on"].values())  # every branch
    (job,) = flow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")
    python = uses(job, "actions/setup-python")["with"]
    assert python["python-version"] == "3.11" and python["cache"] == "pip"
    assert "constraints.txt" in python["cache-dependency-path"]
    uses(job, "actions/checkout")
    assert runs(job).strip() == "bash .ci/run"


def test_ci_runs_the_newcomer_pass_then_installs_what_make_test_needs_then_make_test() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    lines = [
        line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    order = [
        "make install",
        ".ci/check_constraints.py",
        "make test-newcomer",
        "apt-get install",
        "make test ",
    ]
    at = [next(i for i, line in enumerate(lines) if step in line + " ") for step in order]
    assert at == sorted(at), list(zip(order, at, strict=True))
    assert lines[-1].startswith("make test "), "make test's status must be the run's"
    assert "dataset-fashion-mnist" in script and "chromium" in script
    if shutil.which("make"):
        make = subprocess.run(["make", "-n", "test-newcomer"], cwd=ROOT, capture_output=True, text=True)
        newcomer = make.stdout.replace("\\\n", " ")
        for hidden in ("FABOOK_DATA=", "FABOOK_DEBIAN_DATA=", "FABOOK_BROWSER=none"):
            assert hidden in newcomer, newcomer
        assert "-m pytest" in newcomer


def test_the_book_workflow_deploys_the_built_html_to_pages() -> None:
    flow = workflow("book.yml")
    assert flow["on"]["push"] == {"branches": ["main"]}
    assert flow["permissions"]["pages"] == "write" and flow["permissions"]["id-token"] == "write"
    build, deploy = flow["jobs"]["build"], flow["jobs"]["deploy"]
    assert "make book" in runs(build).splitlines()
    assert uses(build, "actions/upload-pages-artifact")["with"]["path"] == "_build/html"
    assert uses(build, "actions/setup-python")["with"]["python-version"] == "3.11"
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert uses(deploy, "actions/deploy-pages")["id"] == "deployment"


def test_the_readme_shows_the_site_and_both_badges() -> None:
    readme = (ROOT / "README.md").read_text()
    url = repo_url()
    assert f"<{site.site_url(url)}>" in readme
    for name in ("test.yml", "book.yml"):
        page = site.workflows_url(url) + name
        assert f"[![{name[:-4]}]({page}/badge.svg)]({page})" in readme
        assert (WORKFLOWS / name).is_file()
    assert site.stale(readme, url) == []


def test_site_addresses() -> None:
    assert site.site_url("https://github.com/fabook/fabook") == "https://fabook.github.io/fabook/"
    assert site.site_url("https://github.com/Jane-Doe/fa.book/") == "https://jane-doe.github.io/fa.book/"
    assert site.site_url("https://github.com/Jane/jane.github.io") == "https://jane.github.io/"
    with pytest.raises(ValueError, match="expected https://github.com/OWNER/NAME"):
        site.site_url("https://gitlab.com/fabook/fabook")
    text = (
        "see https://fabook.github.io/fabook/ and https://github.com/fabook/fabook/actions/workflows/test.yml"
    )
    fork = "https://github.com/jane/fabook"
    assert site.stale(text, fork) == ["https://fabook.github.io/fabook/", site.workflows_url(repo_url())]
    moved = site.rewrite(text, fork)
    assert (
        moved
        == "see https://jane.github.io/fabook/ and https://github.com/jane/fabook/actions/workflows/test.yml"
    )
    assert site.stale(moved, fork) == []


def test_zenodo_metadata_agrees_with_citation_cff() -> None:
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    zenodo = json.loads((ROOT / ".zenodo.json").read_text())
    assert zenodo["title"] == cff["title"] and zenodo["version"] == cff["version"]
    assert zenodo["license"] == cff["license"] == "MIT"
    assert [c["name"] for c in zenodo["creators"]] == [a["name"] for a in cff["authors"]]
    assert zenodo["keywords"] == cff["keywords"] and zenodo["upload_type"] == "software"
    assert {"identifier": cff["repository-code"], "relation": "isSupplementTo"}.items() <= next(
        r for r in zenodo["related_identifiers"] if r["identifier"] == cff["repository-code"]
    ).items()


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_book_gets_full_fashion_mnist_before_any_notebook() -> None:
    def commands(*args: str) -> list[str]:
        out = subprocess.run(
            ["make", "-n", "book", *args], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.splitlines()

    cpu = commands()
    ensure = next(i for i, c in enumerate(cpu) if "-m fabook.data ensure" in c)
    assert cpu[ensure].split()[-1] == "fashion-mnist"
    assert ensure < next(i for i, c in enumerate(cpu) if "-m fabook.book" in c)
    smoke = commands("SCALE=smoke")
    assert next(c for c in smoke if "-m fabook.data ensure" in c).split()[-1] == "ensure"  # nothing to get


def test_the_pins_check_names_each_difference() -> None:
    spec = importlib.util.spec_from_file_location("check_constraints", ROOT / ".ci" / "check_constraints.py")
    check = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / ".ci"))
    try:
        spec.loader.exec_module(check)
    finally:
        sys.path.remove(str(ROOT / ".ci"))
    pins = {"pyyaml": "6.0.3", "torch": "2.14.1"}
    assert check.differences(pins, {"pyyaml": "6.0.3", "torch": "2.14.1+cpu"}) == []
    assert check.differences(pins, {"pyyaml": "6.0.4", "rich": "14.0"}) == [
        "pyyaml 6.0.4 installed, 6.0.3 pinned",
        "rich 14.0 installed, not in constraints.txt (make constraints)",
    ]
    assert check.read_pins(ROOT / "constraints.txt")["ipywidgets"]
