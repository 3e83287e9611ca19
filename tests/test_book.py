"""Tests of the book pipeline (fabook.book) on tiny fake trees; one test runs a real kernel."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from fabook import book, browser
from fabook.book import execution, staging

ROOT = Path(__file__).resolve().parents[1]
COLAB = "https://colab.research.google.com/github/fabook/fabook/blob/main/notebooks/{}.ipynb"


def write_notebook(path: Path, *sources: str, params: str | None = 'scale = "cpu"') -> Path:
    """A notebook with a title, an optional parameters cell, then one code cell per source."""
    cells = [new_markdown_cell("# Demo")]
    if params is not None:
        cells.append(new_code_cell(params, metadata={"tags": ["parameters"]}))
    cells += [new_code_cell(source) for source in sources]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def page(body: str = "", name: str = "a") -> str:
    return f'<html><body><a href="{COLAB.format(name)}">Colab</a>{body}</body></html>'


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A built book that passes every check: one notebook page with a figure, an API page, a toc."""
    html = tmp_path / "html"
    (html / "notebooks").mkdir(parents=True)
    (html / "book").mkdir()
    (html / "figures" / "a").mkdir(parents=True)
    (html / "figures" / "a" / "loss.png").write_bytes(b"png")
    (html / "notebooks" / "a.html").write_text(page('<img src="../figures/a/loss.png"/>'))
    (html / "book" / "api.html").write_text('<section id="module-fabook.rules"></section>')
    (tmp_path / "_toc.yml").write_text("root: book/intro\nparts:\n- chapters:\n  - file: notebooks/a\n")
    return tmp_path


def check(site: Path, notebooks=("a",), **kwargs) -> list[str]:
    kwargs.setdefault("toc", site / "_toc.yml")
    kwargs.setdefault("api_modules", ["fabook.rules"])
    return book.check_html(site / "html", notebooks, **kwargs)


def test_check_html_passes_a_good_book(site: Path) -> None:
    assert check(site) == []


def test_check_html_reports_a_missing_page_and_toc_entry(site: Path) -> None:
    problems = check(site, notebooks=("a", "b"))
    assert any("b.html" in p and "no page" in p for p in problems)
    assert any("notebooks/b.ipynb is not in" in p for p in problems)


def test_check_html_reports_a_toc_entry_without_notebook(site: Path) -> None:
    problems = check(site, notebooks=())
    assert problems == [f"{site / '_toc.yml'} lists notebooks/a but notebooks/ has no such notebook"]


def test_check_html_reports_an_empty_figure(site: Path) -> None:
    (site / "html" / "figures" / "a" / "loss.png").write_bytes(b"")
    problems = check(site)
    assert any("loss.png" in p and "empty" in p for p in problems)


def test_check_html_reports_an_unpublished_figure(site: Path) -> None:
    figures = site / "figures"
    (figures / "a").mkdir(parents=True)
    (figures / "a" / "loss.pdf").write_bytes(b"pdf")
    assert any("loss.pdf" in p and "not published" in p for p in check(site, figures=figures))


def test_check_html_reports_a_traceback(site: Path) -> None:
    (site / "html" / "notebooks" / "a.html").write_text(page('<div class="output traceback">boom</div>'))
    assert any("traceback" in p for p in check(site))


def test_check_html_reports_a_missing_colab_link(site: Path) -> None:
    (site / "html" / "notebooks" / "a.html").write_text("<html><body>no launch buttons</body></html>")
    assert any("Colab" in p for p in check(site))


def test_check_html_reports_a_missing_image(site: Path) -> None:
    (site / "html" / "notebooks" / "a.html").write_text(page('<img src="../_images/gone.png"/>'))
    assert any("_images/gone.png is missing" in p for p in check(site))


def test_check_html_reports_an_undocumented_module(site: Path) -> None:
    problems = check(site, api_modules=["fabook.rules", "fabook.train"])
    assert len(problems) == 1 and "fabook.train" in problems[0]


def test_check_html_reports_an_unresolved_reference(site: Path) -> None:
    ref = '<code class="xref py py-func docutils"><span class="pre">fabook.nope</span></code>'
    (site / "html" / "notebooks" / "a.html").write_text(page(f"see {ref}"))
    assert any("unresolved reference fabook.nope" in p for p in check(site))


def test_check_html_without_a_build(tmp_path: Path) -> None:
    assert "no built book" in book.check_html(tmp_path / "missing", ["a"])[0]


def test_invalid_scale_names_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"'huge'.*smoke, cpu, paper"):
        book.check_scale("huge")
    with pytest.raises(ValueError, match="accepted scales"):
        book.execute_notebooks("huge", notebooks=[])


def test_main_rejects_an_invalid_scale(capsys: pytest.CaptureFixture[str]) -> None:
    assert book.main(["--scale", "huge", "--no-build"]) == 1
    assert "smoke, cpu, paper" in capsys.readouterr().err


def test_find_notebooks_only(tmp_path: Path) -> None:
    for name in ("b", "a"):
        write_notebook(tmp_path / "notebooks" / f"{name}.ipynb", "1")
    assert [p.name for p in book.find_notebooks(tmp_path)] == ["a.ipynb", "b.ipynb"]
    assert [p.name for p in book.find_notebooks(tmp_path, ["b.ipynb"])] == ["b.ipynb"]
    with pytest.raises(ValueError, match="available: a, b"):
        book.find_notebooks(tmp_path, ["c"])


def test_a_notebook_without_parameters_cell_is_refused(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "bare.ipynb", "1", params=None)
    with pytest.raises(book.NotebookError, match=r"bare\.ipynb.*no cell tagged 'parameters'"):
        book.execute_notebooks("smoke", tmp_path / "out", [nb], root=tmp_path, progress=False)


def test_a_failing_notebook_names_itself_its_cell_and_error(tmp_path: Path) -> None:
    good = write_notebook(tmp_path / "good.ipynb", "print(scale)")
    bad = write_notebook(tmp_path / "bad.ipynb", "x = 1", "assert scale == 'smoke'\n1 / 0")
    with pytest.raises(book.NotebookError) as info:
        book.execute_notebooks("smoke", tmp_path / "out", [good, bad], root=tmp_path, progress=False)
    [failure] = info.value.failures
    # cell 3 of the source notebook: title, parameters, "x = 1", then the failing cell
    assert "bad.ipynb" in failure and "cell 3 " in failure and "ZeroDivisionError" in failure
    executed = nbformat.read(tmp_path / "out" / "good.ipynb", as_version=4)
    assert executed.metadata.papermill.parameters == {"scale": "smoke"}
    assert any("smoke" in out.get("text", "") for cell in executed.cells for out in cell.get("outputs", []))


def test_stage_annotates_notebooks_and_lists_figures(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for name in book.STAGED_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / "_config.yml").write_text("repository:\n  url: https://github.com/fabook/fabook\n")
    (root / "book").mkdir()
    (root / "book" / "cite.md").write_text(f"# Cite\n\n{book.FIGURE_LIST_MARKER}\n")
    write_notebook(root / "notebooks" / "a.ipynb", "1")
    write_notebook(root / "notebooks" / "unrun.ipynb", "1")
    executed = write_notebook(tmp_path / "executed" / "a.ipynb", "1")
    nb = nbformat.read(executed, as_version=4)
    nb.metadata["papermill"] = {"parameters": {"scale": "smoke"}}
    nbformat.write(nb, executed)
    for folder in ("a", "gone"):  # "gone": figures of a notebook that no longer exists
        (root / "figures" / folder).mkdir(parents=True)
        for suffix in (".png", ".pdf"):
            (root / "figures" / folder / f"loss{suffix}").write_bytes(b"x")

    stage = book.stage(tmp_path / "executed", tmp_path / "stage", root=root, figures=root / "figures")

    assert sorted(p.name for p in (stage / "notebooks").iterdir()) == ["a.ipynb"]
    staged = nbformat.read(stage / "notebooks" / "a.ipynb", as_version=4)
    note, links = staged.cells[1].source, staged.cells[-1].source
    assert "scale = 'smoke'" in note and "reproductions.md" in note
    assert 'href="../figures/a/loss.png">PNG</a> · <a href="../figures/a/loss.pdf">PDF</a>' in links
    assert [p.name for p in (stage / "_extra" / "figures").iterdir()] == ["a"]
    assert (stage / "_extra" / "figures" / "a" / "loss.pdf").read_bytes() == b"x"
    cite = (stage / "book" / "cite.md").read_text()
    assert book.FIGURE_LIST_MARKER not in cite and "figures/a/loss.png" in cite


def test_the_toc_lists_every_page_and_the_api_page_every_module() -> None:
    entries = book.toc_files(ROOT / "_toc.yml")
    pages = {f"book/{p.stem}" for p in (ROOT / "book").glob("*.md")}
    assert pages <= set(entries), f"pages missing from _toc.yml: {sorted(pages - set(entries))}"
    assert all((ROOT / f"{entry}.md").is_file() for entry in entries if entry.startswith("book/"))
    modules = book.api_modules(ROOT / f"{book.API_PAGE}.md")
    for module in ("rules", "layers", "convert", "optim", "metrics", "data", "models", "train"):
        assert f"fabook.{module}" in modules


def test_main_fails_without_notebooks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert book.main(["--scale", "smoke", "--no-build", "--root", str(tmp_path)]) == 1
    assert "no notebooks in" in capsys.readouterr().err


# --- what a reader must not see (issue 18) ------------------------------------------------------------------

GOOD_TABLE = "<table><tr><th>claim</th><th>verdict</th></tr><tr><td>FA learns</td><td>holds</td></tr></table>"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "<table><tr><th>claim</th></tr><tr><td>FA learns nearly as well as...</td></tr></table>",
            "cut cells",
        ),
        ("<table><tr><th>claim</th></tr><tr><td>…</td></tr></table>", "cut cells"),
        ("<table><tr><th>bp BN</th></tr><tr><td>61.2 ± nan</td></tr></table>", "NaN"),
        ("<table><tr><th>dataset</th><th>ours %</th></tr></table>", "empty"),
        ("<p>/home/builder/.venv/lib/python3.11/site-packages/tqdm/auto.py:21</p>", "path of the machine"),
        ('<div class="output stderr"><pre>TqdmWarning</pre></div>', "stderr"),
        ("<p>feedback $W^\\top \\delta y$ here</p>", "TeX not rendered"),
        ('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>', "CDN"),
        ('<div class="cell_output docutils container">\n</div>', "empty output"),
    ],
)
def test_page_problems_catch_each_defect(body: str, expected: str) -> None:
    problems = book.page_problems(Path("p.html"), page(GOOD_TABLE + body), ["site-packages"])
    assert len(problems) == 1 and expected in problems[0], problems


def test_page_problems_pass_rendered_maths_code_and_whole_tables() -> None:
    body = (
        GOOD_TABLE + '<span class="math notranslate nohighlight">\\(W^\\top\\)</span><pre>echo $HOME\\n</pre>'
    )
    assert book.page_problems(Path("p.html"), page(body), ["site-packages"]) == []


def test_check_html_compares_colab_links_with_the_config(site: Path) -> None:
    assert check(site, repository=("fabook/fabook", "main")) == []
    [problem] = check(site, repository=("someone/fork", "main"))
    assert "someone/fork" in problem and "Colab" in problem


def repo_tree(root: Path, slug: str = "fabook/fabook") -> Path:
    (root / "notebooks").mkdir(parents=True)
    (root / "book").mkdir()
    (root / "_config.yml").write_text(f"repository:\n  url: https://github.com/{slug}\n  branch: dev\n")
    (root / "README.md").write_text(
        "[![Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/fabook/fabook/blob/main/notebooks/a.ipynb)\n"
        "git clone https://github.com/fabook/fabook\nData: https://github.com/zalandoresearch/fashion-mnist\n"
    )
    (root / "book" / "cite.md").write_text("howpublished = {\\url{https://github.com/fabook/fabook}},\n")
    (root / "CITATION.cff").write_text('repository-code: "https://github.com/fabook/fabook"\n')
    write_notebook(
        root / "notebooks" / "a.ipynb",
        '%pip install -q "fabook[book] @ git+https://github.com/fabook/fabook"',
    )
    return root


def test_the_repository_address_lives_in_config_only(tmp_path: Path) -> None:
    root = repo_tree(tmp_path)
    assert book.repository(root) == ("fabook/fabook", "dev") and book.stale_addresses(root) == []
    (root / "_config.yml").write_text("repository:\n  url: https://github.com/me/my-fork\n")
    assert len(book.stale_addresses(root)) == 5  # README twice, cite.md, CITATION.cff, the notebook
    assert len(book.write_repository(root)) == 4 and book.stale_addresses(root) == []
    readme = (root / "README.md").read_text()
    assert "github/me/my-fork/blob" in readme and "clone https://github.com/me/my-fork" in readme
    assert "zalandoresearch/fashion-mnist" in readme  # other repositories are left alone
    assert "git+https://github.com/me/my-fork" in (root / "notebooks" / "a.ipynb").read_text()
    (root / "_config.yml").write_text("repository:\n  url: http://example.org/x\n")
    with pytest.raises(ValueError, match="repository.url"):
        book.repository(root)


def test_the_project_files_agree_with_config() -> None:
    assert book.stale_addresses(ROOT) == []


def test_stage_keeps_stderr_and_test_cells_off_the_page() -> None:
    nb = new_notebook(cells=[new_code_cell("x"), new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)")])
    nb.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="TqdmWarning: IProgress not found"),
        nbformat.v4.new_output("stream", name="stdout", text="kept"),
    ]
    staging._for_the_page(nb)
    assert [o.name for o in nb.cells[0].outputs] == ["stdout"]
    assert nb.cells[1].metadata.tags == ["remove-cell"] and nb.cells[0].metadata.tags == []


def test_sweep_progress_reaches_the_terminal_once_per_cell() -> None:
    lines: list[str] = []
    progress = execution._SweepProgress("  ", lines.append, every=0)
    progress.write("TqdmWarning: IProgress not found\n")
    bar = "\rliao: {:3d}%|#   | {}/8 [00:{:02d}<00:30, 1.1s/cell]"
    for done in (0, 1, 1, 8):
        progress.write(bar.format(done * 12, done, done))
    progress.write("\rbp-1234: 50%|#  | 1/2 [00:01<00:01, 1.0s/epoch]")  # a training bar: not a sweep's
    assert lines == [
        "  sweep liao: 0/8 cells (00:00 elapsed, about 00:30 left)",
        "  sweep liao: 1/8 cells (00:01 elapsed, about 00:30 left)",
        "  sweep liao: 8/8 cells (00:08 elapsed)",
    ]
    lines.clear()
    throttled = execution._SweepProgress("", lines.append, every=3600)
    for done in range(9):
        throttled.write(bar.format(done * 12, done, done))
    assert [line.split(":")[1] for line in lines] == [
        " 0/8 cells (00",
        " 8/8 cells (00",
    ]  # first and last only


def test_project_root_from_the_notebooks_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = repo_tree(tmp_path / "clone")
    monkeypatch.chdir(root / "notebooks")
    monkeypatch.delenv("FABOOK_RUNS", raising=False)
    monkeypatch.delenv(book.FIGURES_ENV, raising=False)
    from fabook.cli import runs_dir

    assert book.project_root() == root.resolve() and runs_dir() == root.resolve() / "runs"
    assert book.figures_dir() == root.resolve() / "figures"
    monkeypatch.chdir(tmp_path)
    assert book.project_root() == tmp_path.resolve()  # no clone (Colab): the working directory


def test_a_figure_cell_without_figure_is_reported(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "a.ipynb", "notebook.save_figure(fig, 'a', 'loss');")
    assert "saves a figure but shows none" in book.figure_problems([path])[0]


@pytest.mark.skipif(browser.find() is None, reason=browser.skipped())
def test_screenshots_of_every_page(tmp_path: Path) -> None:
    html = tmp_path / "html"
    (html / "notebooks").mkdir(parents=True)
    (html / "notebooks" / "a.html").write_text(page(GOOD_TABLE))
    (html / "math.html").write_text('<p><span class="math notranslate nohighlight">\\(x\\)</span></p>')
    problems = book.screenshot(html, tmp_path / "shots", browser=browser.find())
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == ["math.png", "notebooks__a.png"]
    assert problems == [f"{html / 'math.html'}: maths not rendered by MathJax in headless Chromium"]


def test_citation_cff_matches_cite_page() -> None:
    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    cite = (ROOT / "book" / "cite.md").read_text()
    slug, _ = book.repository(ROOT)
    assert (
        cff["repository-code"] == f"https://github.com/{slug}"
        and f"\\url{{https://github.com/{slug}}}" in cite
    )
    assert f"title        = {{{cff['title']}}}" in cite
    assert f"Version {cff['version']}" in cite and cff["authors"][0]["name"] in cite
    project = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{cff["version"]}"' in project


@pytest.mark.skipif(
    not os.environ.get("FABOOK_SLOW"), reason="slow (a fresh venv and a notebook): set FABOOK_SLOW=1 to run"
)
@pytest.mark.parametrize("name", [p.stem for p in book.find_notebooks(ROOT)])
def test_a_fresh_venv_runs_the_notebook_as_colab_would(name: str, tmp_path: Path) -> None:
    """The install line of the notebook's first cell, pointed at this clone instead of GitHub, in a new venv
    (system site packages stand in for the package index: no 3 GB torch download); then the notebook at the
    smoke scale from a folder outside the clone, as on Colab."""
    import re
    import subprocess
    import sys

    source = (ROOT / "notebooks" / f"{name}.ipynb").read_text()
    [spec] = re.findall(r'%pip install -q \\"([^"\\\\]+) @ git\+https://github\.com/[\w./-]+\\"', source)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", "--no-deps"]
    subprocess.run([*pip, f"{spec} @ {ROOT.as_uri()}"], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FABOOK_RUNS", "FABOOK_FIGURES")}
    env["OMP_NUM_THREADS"] = "1"
    where = subprocess.run(
        [python, "-c", "import fabook; print(fabook.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert str(venv) in where.stdout, where  # the venv's copy, not this clone's
    content = tmp_path / "content"
    content.mkdir()
    run = [python, "-m", "papermill", "--no-progress-bar", "-p", "scale", "smoke", "-k", "python3"]
    subprocess.run(
        [*run, ROOT / "notebooks" / f"{name}.ipynb", content / "out.ipynb"], env=env, cwd=content, check=True
    )
    assert (content / "runs" / name / "smoke").is_dir() and (content / "figures" / name).is_dir()


def test_the_constraints_pin_every_requirement_within_its_range() -> None:
    """make and CI install with constraints.txt: its pins meet pyproject's ranges (that they are what is
    installed is CI's check, .ci/check_constraints.py: a user's environment may hold newer releases)."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = dict(
        line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for text in project["dependencies"] + extras["book"] + extras["dev"]:  # what `make install` installs
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is not pinned in constraints.txt (make constraints)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req}"


def test_display_shows_tables_whole_and_passes_the_page_check() -> None:
    import numpy as np
    import pandas as pd

    from fabook import display

    claim = "FA learns nearly as well as BP on every data set, within two standard errors " * 2
    frame = pd.DataFrame({"claim": [claim, "short"], "sd": [np.nan, 0.51234], "n": [3, 4], "scale": "cpu"})
    html = display.to_html(frame)
    assert claim.strip() in html and "nan" not in html.lower() and ">0.51<" in html
    small = display.to_html(pd.DataFrame({"lr": [1.5625e-5, 0.001, 0.0]}))
    assert ">1.6e-05<" in small and ">0.001<" in small and ">0.0<" in small  # small is not zero
    assert book.page_problems(Path("p.html"), page(html)) == []
    wide = pd.DataFrame([range(9)], columns=["scale", *"abcdefgh"])
    parts = display.to_html(wide, max_columns=5, repeat=["scale"]).split("<table>")[1:]
    assert len(parts) == 2 and all("<th>scale</th>" in p for p in parts) and "<th>h</th>" in parts[1]
    assert "Nothing was trained" in display.to_html(frame.iloc[:0], empty="Nothing was trained.")
    with pytest.raises(ValueError, match="empty"):
        display.show(frame.iloc[:0])
    with pytest.raises(ValueError, match="lacks"):
        display.show(frame, repeat=["seed"])


def test_a_notebook_without_the_colab_install_cell_is_reported(tmp_path: Path) -> None:
    good = write_notebook(tmp_path / "good.ipynb", params=None)
    nb = nbformat.read(good, as_version=4)
    nb.cells.insert(1, new_code_cell('%pip install -q "fabook[book] @ git+https://github.com/fabook/fabook"'))
    nbformat.write(nb, good)
    old = write_notebook(
        tmp_path / "old.ipynb", '%pip install -q "fabook @ git+https://github.com/fabook/fabook"'
    )
    assert book.install_problems([good]) == []
    [problem] = book.install_problems([old])
    assert "old.ipynb" in problem and "fabook[book]" in problem
    assert book.install_problems(book.find_notebooks(ROOT)) == []


def test_the_page_folds_the_knobs_and_drops_cells_that_only_glue() -> None:
    from fabook.book.staging import _for_the_page

    nb = new_notebook(
        cells=[
            new_code_cell('scale = "cpu"', metadata={"tags": ["parameters"]}),
            new_code_cell('glue("a", 1, display=False)\nglue("b", 2, display=False)'),
            new_code_cell('glue("a", 1, display=False)\nshow(table)'),
        ]
    )
    _for_the_page(nb)
    tags = [cell.metadata.get("tags", []) for cell in nb.cells]
    assert tags == [["parameters", "hide-cell"], ["remove-cell"], []]


def test_each_figure_has_an_anchor_and_a_line_to_cite_it(tmp_path: Path) -> None:
    from fabook.book.staging import _figure_links

    (tmp_path / "nb").mkdir()
    for suffix in (".png", ".pdf"):
        (tmp_path / "nb" / f"curves{suffix}").write_bytes(b"x")
    (item,) = _figure_links(tmp_path, "nb", "../", commit="abc123", recorded="def456")
    assert '<a id="fig-nb-curves"></a>' in item and "PNG" in item and "PDF" in item
    assert (
        "figure `nb/curves`" in item and "`abc123`" in item and "recorded results of commit `def456`" in item
    )
    (item,) = _figure_links(tmp_path, "nb", "../", commit="abc123", recorded=None)
    assert "results computed when the book was built" in item
