"""Screenshots of the console's main pages into docs/console/ (the README shows them).

Starts `riskengine serve` on a temporary state directory, puts an experiment live (a
challenger answering for 20 % of the accounts, one in shadow), sends demo traffic
(riskengine.synth) for a few seconds so the overview has rates, then drives Debian's
Chromium with Playwright through the pages, signed in as analyst ann (the review item is
claimed by ann, its resolve form filled in, not sent); then it posts the traffic's
labels for the experiment's comparison and backtests the example candidate on the
logged events from the backtests page. Run from the repository root:

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

from riskengine.config import EXAMPLE_CONFIG_PATH  # noqa: E402
from riskengine.synth import generate_transfers  # noqa: E402
from tests.console.browser import chromium, served, sign_in  # noqa: E402
from tests.service.helpers import ADMIN_HEADERS  # noqa: E402

OUT = ROOT / "docs" / "console"
BATCH = 200
EXPERIMENT = {
    "key": "pay_account", "salt": "2026-01", "split": {"champion": 80, "strict": 20},
    "challengers": {
        "strict": {"mode": "decide", "policy": {"review_at": 40, "reject_at": 70}, "rules": [
            {"id": "large_new_receiver", "when": "pair_count_30d == 1 and amount >= 1000",
             "score": 50, "reason": "large transfer to a new receiver"},
            {"id": "card_testing", "when": "small_tx_device_10m >= 4", "score": 80,
             "reason": "burst of small payments from one device"}]},
        "watch": {"mode": "shadow", "rules": [
            {"id": "shared_device", "when": "accounts_per_device_1h >= 3", "score": 30,
             "reason": "one device used by many paying accounts"}]}}}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, served(Path(tmp) / "state") as service, \
            chromium() as browser:
        events = list(generate_transfers(6000, seed=7))
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        httpx.put(f"{service.url}/v1/scenes/transfer/experiment", json=EXPERIMENT,
                  headers=ADMIN_HEADERS, timeout=30).raise_for_status()
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
        labels = [{"event_id": e["event_id"], "label": e["label"]} for e in events]
        httpx.post(f"{service.url}/v1/labels", json=labels, headers=ADMIN_HEADERS,
                   timeout=60).raise_for_status()
        page.goto(f"{service.url}/console/experiments?scene=transfer")
        page.wait_for_selector("[data-chart] canvas")
        page.screenshot(path=OUT / "experiments.png", full_page=True)
        candidate = json.loads((EXAMPLE_CONFIG_PATH.parent / "candidate-transfer.json")
                               .read_text(encoding="utf-8"))
        stored = httpx.put(f"{service.url}/v1/scenes/transfer/ruleset?activate=false",
                           json=candidate, headers=ADMIN_HEADERS, timeout=30)
        stored.raise_for_status()
        page.goto(f"{service.url}/console/rules")
        page.click(f"a.backtest[href*='{stored.json()['version']}']")
        page.click("form[action$='/backtests/run'] button")
        page.wait_for_selector("#backtest-job.finished", timeout=300_000)
        page.wait_for_selector("#reports a")
        page.screenshot(path=OUT / "backtests.png", full_page=True)
        page.click("#backtest-job a")
        page.wait_for_selector("#alert-rate canvas")
        page.screenshot(path=OUT / "backtest.png", full_page=True)
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
