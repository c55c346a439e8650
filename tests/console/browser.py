"""A real `riskengine serve` and Debian's Chromium driven by Playwright, for the console's
browser tests and screenshots. Chromium is the system one (/usr/bin/chromium, installed
by scripts/install_services.sh); Playwright's own browser downloads are never used."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

from tests.service.helpers import ADMIN
from tests.service.process import ServiceProcess

CHROMIUM = Path("/usr/bin/chromium")
XSS = "<script>window.__xss = 1</script>"
"""User input that must show as text: a script that ran would open no dialog here, but
the `page` fixture (tests/console/conftest.py) fails the test if any dialog opened."""


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def served(state_dir: Path, config: Path | None = None,
           extra: list[str] | None = None) -> Iterator[ServiceProcess]:
    service = ServiceProcess(state_dir, config, extra).start()
    try:
        yield service
    finally:
        service.stop()


def sign_in(page: Page, url: str, token: str = ADMIN, analyst: str | None = None) -> None:
    page.goto(url + "/console/login")
    page.fill("input[name=token]", token)
    if analyst is not None:
        page.fill("input[name=analyst]", analyst)
    page.click("button[type=submit]")


def evaluate(service: ServiceProcess, event: dict[str, object]) -> dict[str, object]:
    """POST `event` to the transfer scene of `service`; its decision (200 expected)."""
    response = httpx.post(f"{service.url}/v1/transfer/evaluate", json=event, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body
