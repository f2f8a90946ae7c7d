#!/usr/bin/env python
"""Take the README's screenshots from a running demo portal (`make run`), as JPEGs of the first
screen of each page, with the machine's Chromium:

    .venv/bin/python tools/readme_screenshots.py [http://127.0.0.1:8000]

They land in docs/screenshots/. The browser journeys (tests/browser/test_story.py) take full-page
screenshots of the same story in test-results/screenshots/.
"""

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
PASSWORD = "portal-demo-2026"
SHOTS = [  # person, page, file
    ("eva.vanderberg@vanderberg.example", "/dashboard/dealer/", "dealer-dashboard.jpg"),
    ("eva.vanderberg@vanderberg.example", "/tier/", "dealer-tier.jpg"),
    ("jeroen.visser@vendor.example", "/registrations/17/", "conflict-side-by-side.jpg"),
    ("marieke.devries@vendor.example", "/dashboard/region/", "region-dashboard.jpg"),
    ("jeroen.visser@vendor.example", "/forecast/", "forecast.jpg"),
]


def main(base: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
        for email, path, name in SHOTS:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            page = context.new_page()
            page.goto(f"{base}/accounts/login/")
            page.fill("input[name=login]", email)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            page.goto(f"{base}{path}")
            page.screenshot(path=str(OUT / name), type="jpeg", quality=70)
            print(OUT / name)
            context.close()
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")
