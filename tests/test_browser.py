"""fabook.browser: which headless browser the page check uses, and what it says without one."""

from __future__ import annotations

import pytest

from fabook import browser


def test_the_first_browser_on_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(browser.ENV, raising=False)
    on_path = {"chromium-browser": "/usr/bin/chromium-browser", "google-chrome": "/opt/chrome"}
    monkeypatch.setattr(browser.shutil, "which", on_path.get)
    assert browser.find() == "/usr/bin/chromium-browser"
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    assert browser.find() is None


def test_the_variable_chooses_or_hides_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    chrome = tmp_path / "chrome"
    chrome.write_text("#!/bin/sh\n")
    chrome.chmod(0o755)
    monkeypatch.setenv(browser.ENV, str(chrome))
    assert browser.find() == str(chrome)
    monkeypatch.setenv(browser.ENV, "none")
    assert browser.find() is None
    monkeypatch.setenv(browser.ENV, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=f"FABOOK_BROWSER='{tmp_path / 'missing'}' is not an executable"):
        browser.find()


def test_without_one_the_check_says_how_to_get_it(monkeypatch, capsys) -> None:
    monkeypatch.setenv(browser.ENV, "none")
    assert browser.main() == 1
    out = capsys.readouterr().out
    assert out.startswith("screenshots skipped: no headless browser (chromium,")
    assert "sudo apt-get install chromium" in out and browser.ENV in out
