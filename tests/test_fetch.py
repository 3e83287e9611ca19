"""fabook.data.ensure: download, else the Debian package, else one error naming each way; no real network or
apt-get here (both are replaced), except for reachable(), which connects to a socket on this machine."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from fabook import data
from fabook.data import __main__ as data_cli
from fabook.data import fetch, offline, small


def put_fashion_files(folder: Path) -> None:
    """Real IDX files (fashion-mnist-small's) where full Fashion-MNIST is looked for."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in small.SMALL_DIR.glob("*.gz"):
        shutil.copy(path, folder / path.name)


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root and a Debian folder without Fashion-MNIST; using apt-get or the network fails the test."""
    monkeypatch.setenv(offline.DEBIAN_ENV, str(tmp_path / "debian"))

    def unexpected(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"unexpected call {args}")

    monkeypatch.setattr(fetch.subprocess, "run", unexpected)
    monkeypatch.setattr(fetch, "reachable", unexpected)
    return tmp_path / "root"


def offline_machine(monkeypatch: pytest.MonkeyPatch, *, apt: bool, uid: int) -> None:
    monkeypatch.setattr(fetch, "reachable", lambda url, timeout=fetch.PROBE_SECONDS: False)
    monkeypatch.setattr(fetch.shutil, "which", lambda cmd: "/usr/bin/apt-get" if apt else None)
    monkeypatch.setattr(fetch.os, "geteuid", lambda: uid)


def test_a_set_that_is_here_needs_no_way(nowhere: Path) -> None:
    assert data.ensure("fashion-mnist-small", nowhere) == "fashion-mnist-small: here"
    put_fashion_files(nowhere / "FashionMNIST" / "raw")
    assert data.ensure("fashion-mnist", nowhere) == "fashion-mnist: here"


def test_online_it_downloads_with_torchvision(nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probed, calls, url = [], [], fetch.source_url("fashion-mnist")
    monkeypatch.setattr(fetch, "reachable", lambda url, timeout: probed.append((url, timeout)) or True)

    def download(root: str, train: bool, download: bool) -> None:
        calls.append((Path(root), train, download))
        put_fashion_files(Path(root) / "FashionMNIST" / "raw")

    download.mirrors = [url]  # read by source_url
    monkeypatch.setattr("torchvision.datasets.FashionMNIST", download)
    assert (
        data.ensure("fashion-mnist", nowhere, timeout=1.5)
        == f"fashion-mnist: downloaded by torchvision into {nowhere}"
    )
    assert probed == [(url, 1.5)]
    assert calls == [(nowhere, True, True), (nowhere, False, True)]
    assert data.available("fashion-mnist", nowhere)


def test_offline_as_root_it_installs_the_debian_package(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline_machine(monkeypatch, apt=True, uid=0)
    commands = []

    def apt_get(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
        commands.append([c for c in command if c not in fetch.APT_OPTIONS])
        assert env["DEBIAN_FRONTEND"] == "noninteractive"
        if commands[-1][1] == "install" and len(commands) == 1:  # the package lists are empty: not found
            return subprocess.CompletedProcess(command, 100)
        if commands[-1][1] == "install":
            put_fashion_files(offline.debian_folder("fashion-mnist"))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(fetch.subprocess, "run", apt_get)
    assert (
        data.ensure("fashion-mnist", nowhere)
        == "fashion-mnist: installed the Debian package dataset-fashion-mnist"
    )
    install = ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]
    assert commands == [install, ["apt-get", "update", "-q"], install]
    assert data.available("fashion-mnist", nowhere)


@pytest.mark.parametrize(
    ("apt", "uid", "why"),
    [
        (False, 0, "apt-get not found"),
        (True, 1000, "needs root: run `sudo apt-get update && sudo apt-get install dataset-fashion-mnist`"),
    ],
)
def test_without_a_way_one_error_names_each(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch, apt: bool, uid: int, why: str
) -> None:
    offline_machine(monkeypatch, apt=apt, uid=uid)
    with pytest.raises(FileNotFoundError) as err:
        data.ensure("fashion-mnist", nowhere)
    message = str(err.value)
    host = "fashion-mnist.s3-website.eu-central-1.amazonaws.com"
    assert f"torchvision's download: {host} not reachable in 3 s" in message
    assert f"the Debian package dataset-fashion-mnist: {why}" in message
    assert str(nowhere / "FashionMNIST" / "raw") in message and "Get it with:" in message


def test_a_failed_download_falls_back_to_apt(nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    offline_machine(monkeypatch, apt=False, uid=0)
    monkeypatch.setattr(fetch, "reachable", lambda url, timeout: True)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("HTTP Error 503: Service Unavailable")

    broken.mirrors = [fetch.source_url("fashion-mnist")]
    monkeypatch.setattr("torchvision.datasets.FashionMNIST", broken)
    with pytest.raises(FileNotFoundError, match="HTTP Error 503") as err:
        data.ensure("fashion-mnist", nowhere)
    assert "apt-get not found" in str(err.value)


def test_a_set_without_a_way_and_an_unknown_name(nowhere: Path) -> None:
    with pytest.raises(
        FileNotFoundError,
        match=r"imagenet is not here .*\n  - fabook cannot fetch it by itself\nGet it with:",
    ):
        data.ensure("imagenet", nowhere)
    with pytest.raises(ValueError, match="fashion-mnist-small"):
        data.ensure("fashion-mnist-tiny", nowhere)


def test_every_downloadable_set_has_a_source() -> None:
    for name in offline.DOWNLOADABLE | fetch.paper.DOWNLOADABLE:
        assert fetch.downloadable(name) and fetch.source_url(name).startswith(("http://", "https://")), name
    with pytest.raises(ValueError, match="does not download 'iris'"):
        fetch.source_url("iris")


def test_reachable_answers_within_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # no `nowhere` here: this test is of the real reachable(), on a socket of this machine
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert fetch.reachable(f"http://127.0.0.1:{port}/data", timeout=2)
    assert not fetch.reachable(f"http://127.0.0.1:{port}/data", timeout=2)  # closed: refused at once

    def hangs(*args: object, **kwargs: object) -> None:  # a name lookup no DNS server answers
        time.sleep(2)
        raise socket.gaierror("Temporary failure in name resolution")

    monkeypatch.setattr(fetch.socket, "create_connection", hangs)
    start = time.monotonic()
    assert not fetch.reachable("https://example.invalid/", timeout=0.2)
    assert time.monotonic() - start < 1


def test_the_command_line(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("FABOOK_DATA", str(nowhere))
    offline_machine(monkeypatch, apt=False, uid=0)
    assert data_cli.main(["ensure"]) == 0  # nothing to fetch (make book SCALE=smoke)
    assert data_cli.main(["ensure", "fashion-mnist-small"]) == 0
    assert capsys.readouterr().out == "fashion-mnist-small: here\n"
    assert data_cli.main(["ensure", "fashion-mnist", "--timeout", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: fashion-mnist is not here") and "not reachable in 0.5 s" in err
