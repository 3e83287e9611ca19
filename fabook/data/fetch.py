"""Get a data set onto this machine before anything trains on it: :func:`ensure`.

``make book`` calls it (``python -m fabook.data ensure fashion-mnist``) before the first notebook runs, so a
missing set fails in seconds, naming every way to get it, rather than after minutes of other chapters.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

from . import offline, paper
from .cache import default_root
from .catalogue import get_info

PROBE_SECONDS = 3.0
"""How long :func:`reachable` waits for a connection (the name lookup included) before calling it offline."""

DEBIAN_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}
"""The Debian packages that hold a data set (their files go to :func:`fabook.data.offline.debian_folder`)."""

APT_OPTIONS = ("-o", "Acquire::http::Timeout=20", "-o", "Acquire::Retries=0")
"""apt-get without a reachable mirror fails after one try instead of retrying for minutes."""


def downloadable(name: str) -> bool:
    """Whether torchvision can download ``name``."""
    return name in offline.DOWNLOADABLE | paper.DOWNLOADABLE


def source_url(name: str) -> str:
    """Where torchvision downloads ``name`` from (its first mirror); ValueError if it can't."""
    import torchvision.datasets as tv

    classes = {
        "fashion-mnist": tv.FashionMNIST, "mnist": tv.MNIST, "cifar10": tv.CIFAR10, "cifar100": tv.CIFAR100,
        "svhn": tv.SVHN, "stl10": tv.STL10,
    }  # fmt: skip
    if name not in classes:
        raise ValueError(f"torchvision does not download {name!r}; it downloads: {', '.join(classes)}")
    cls = classes[name]
    if hasattr(cls, "mirrors"):
        return cls.mirrors[0]
    return cls.split_list["train"][0] if name == "svhn" else cls.url


def reachable(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds. The attempt runs in a
    thread, so a name lookup that hangs (no DNS server answers) cannot hold the caller longer."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    answer: queue.Queue[bool] = queue.Queue()

    def connect() -> None:
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            answer.put(True)
        except OSError:
            answer.put(False)

    threading.Thread(target=connect, daemon=True).start()
    try:
        return answer.get(timeout=timeout)
    except queue.Empty:
        return False


def cannot_apt(package: str) -> str | None:
    """Why apt-get cannot install ``package`` here (no apt-get, not root), or None when it can."""
    if shutil.which("apt-get") is None:
        return "apt-get not found (not Debian/Ubuntu)"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return f"needs root: run `sudo apt-get update && sudo apt-get install {package}`, then try again"
    return None


def apt_install(package: str) -> int:
    """``apt-get install -y package`` (after ``apt-get update`` when the package lists lack it); the exit
    status. Its output goes to the terminal."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", *APT_OPTIONS, "install", "-y", "-q", package]
    if subprocess.run(install, env=env).returncode == 0:
        return 0
    update = subprocess.run(["apt-get", *APT_OPTIONS, "update", "-q"], env=env).returncode
    return update or subprocess.run(install, env=env).returncode


def ensure(name: str, root: str | Path | None = None, *, timeout: float = PROBE_SECONDS) -> str:
    """Make ``name`` loadable offline under ``root`` (default :func:`fabook.data.default_root`); say how.

    Tried in turn: it is already here; torchvision's download, when its server answers within ``timeout``
    seconds; its Debian package (``dataset-fashion-mnist``), when apt-get is there and the user is root. When
    none works, FileNotFoundError names each way and why it failed. ValueError for an unknown name.
    """
    from . import missing

    info = get_info(name)
    root = default_root() if root is None else Path(root).expanduser()
    if missing(name, root) is None:
        return f"{name}: here"
    tried = []
    if downloadable(name):
        url = source_url(name)
        if reachable(url, timeout):
            try:
                (offline.LOADERS.get(name) or paper.LOADERS[name])(root, True)
                return f"{name}: downloaded by torchvision into {root}"
            except Exception as err:  # a broken mirror or a full disk: the next way may still work
                tried.append(f"torchvision's download into {root} failed: {err}")
        else:
            tried.append(f"torchvision's download: {urlsplit(url).hostname} not reachable in {timeout:g} s")
    package = DEBIAN_PACKAGES.get(name)
    if package is not None:
        why = cannot_apt(package)
        if why is None:
            status = apt_install(package)
            if missing(name, root) is None:
                return f"{name}: installed the Debian package {package}"
            folder = offline.debian_folder(name)
            tried.append(f"apt-get install {package}: exit status {status}, and {folder} still lacks files")
        else:
            tried.append(f"the Debian package {package}: {why}")
    ways = "\n".join(f"  - {line}" for line in tried or ["fabook cannot fetch it by itself"])
    raise FileNotFoundError(
        f"{name} is not here (missing {missing(name, root)}) and could not be fetched:\n{ways}\n"
        f"Get it with: {info.fetch}"
    )
