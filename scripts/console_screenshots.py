"""Screenshots of the console's main pages into docs/console/ (the README shows them).

Starts `riskengine serve` on a temporary state directory, sends demo traffic
(riskengine.synth) for a few seconds so the overview has rates, then drives Debian's
Chromium with Playwright through the pages, signed in as analyst ann (the review item is
claimed by ann, its resolve form filled in, not sent). Run from the repository root:

    python scripts/console_screenshots.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from riskengine.synth import generate_transfers  # noqa: E402
from tests.console.browser import chromium, served, sign_in  # noqa: E402
from tests.service.helpers import ADMIN_HEADERS  # noqa: E402

OUT = ROOT / "docs" / "console"
BATCH = 200


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, served(Path(tmp) / "state") as service, \
            chromium() as browser:
        events = list(generate_transfers(6000, seed=7))
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, service.url, analyst="ann")
        page.wait_for_selector("#rate-chart canvas")
        for start in range(0, len(events), BATCH):  # about 30 batches over ~10 s
            response = httpx.post(f"{service.url}/v1/transfer/evaluate/batch",
                                  json=events[start:start + BATCH], timeout=30)
            response.raise_for_status()
            time.sleep(0.3)
        page.wait_for_timeout(4000)  # two more panel refreshes
        page.screenshot(path=OUT / "overview.png", full_page=True)
        rejected = httpx.get(f"{service.url}/v1/decisions", params={"decision": "reject",
                                                                    "limit": 1},
                             headers=ADMIN_HEADERS).json()
        event_id = rejected[0]["event_id"] if rejected else events[-1]["event_id"]
        page.goto(f"{service.url}/console/decisions?scene=transfer")
        page.screenshot(path=OUT / "decisions.png")
        page.goto(f"{service.url}/console/decision?id={event_id}")
        page.screenshot(path=OUT / "decision.png", full_page=True)
        account = events[-1]["pay_account"]
        page.goto(f"{service.url}/console/entity?scene=transfer&field=pay_account"
                  f"&value={account}")
        page.screenshot(path=OUT / "entity.png", full_page=True)
        page.goto(f"{service.url}/console/rules")
        body = json.loads(page.input_value("textarea[name=ruleset]"))
        body["rules"].append({"id": "big_amount", "when": "amount > 1000 and\n  (amount >",
                              "score": 5, "reason": "large transfer"})
        page.fill("textarea[name=ruleset]", json.dumps(body, indent=2))
        page.click("text=Save and put live")
        page.screenshot(path=OUT / "rules-error.png")
        page.goto(f"{service.url}/console/lists?name=blocked_devices")
        page.screenshot(path=OUT / "lists.png")
        _reviews(page, service.url)
    print(f"wrote {', '.join(sorted(p.name for p in OUT.glob('*.png')))} to {OUT}")


def _reviews(page: Page, url: str) -> None:
    """The review queue, and an item claimed by the signed-in analyst with its resolve
    form filled in."""
    queued = httpx.get(f"{url}/v1/reviews", params={"state": "open", "limit": 1},
                       headers=ADMIN_HEADERS).json()
    if not queued:
        raise SystemExit("the demo traffic queued no review; nothing to show")
    page.goto(f"{url}/console/reviews?scene=transfer")
    page.screenshot(path=OUT / "reviews.png")
    page.goto(f"{url}/console/review?{urlencode({'id': queued[0]['event_id']})}")
    page.click("#claim button")
    form = page.locator("#resolve")
    form.locator("input[value=fraud]").check()
    form.locator("textarea[name=note]").fill("new receiver, small test payment, device "
                                             "seen on other accounts")
    form.locator("select[name=list]").select_option("blocked_devices")
    form.locator("select[name=field]").select_option("device_id")
    form.locator("input[name=reason]").fill("confirmed fraud")
    page.screenshot(path=OUT / "review.png", full_page=True)


if __name__ == "__main__":
    main()
