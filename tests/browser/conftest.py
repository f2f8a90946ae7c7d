"""Browser journeys: Python Playwright driving the machine's Chromium against pytest-django's live server.

No browser is ever downloaded: the journeys use Debian's /usr/bin/chromium (`apt-get install chromium`).
Without it they are skipped, unless PRM_REQUIRE_BROWSER=1 (CI), which turns the skip into a failure.
"""

import io
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import override_settings

# Playwright's sync API runs an asyncio event loop in this thread; without this Django refuses the
# ORM calls the fixtures and the assertions make from it.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM_MISSING = "Chromium not installed: apt-get install chromium to run the browser journeys"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("PRM_REQUIRE_BROWSER") == "1":
            pytest.fail(CHROMIUM_MISSING, pytrace=False)
        pytest.skip(CHROMIUM_MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _screenshot_name(request) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)


@pytest.fixture
def new_page(browser, request):
    """Open extra pages (a fresh context each: no shared cookies); each is screenshotted on teardown."""
    contexts = []
    elsewhere = []  # requests to any host but the live server: the portal must not use a CDN
    refused = []  # what the Content-Security-Policy blocked: a page that needs it is broken

    def note(req):
        if urlsplit(req.url).scheme in ("http", "https") and urlsplit(req.url).hostname not in LOCAL_HOSTS:
            elsewhere.append(req.url)

    def note_console(message):
        if message.type == "error" and "Content Security Policy" in message.text:
            refused.append(f"{message.page.url if message.page else ''}: {message.text}")

    def open_page(*, viewport=DESKTOP, suffix=""):
        context = browser.new_context(viewport=viewport)
        context.set_default_timeout(10_000)
        context.on("request", note)
        context.on("console", note_console)
        contexts.append((context, suffix))
        return context.new_page()

    yield open_page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for context, suffix in contexts:
        for page in context.pages:
            page.screenshot(path=str(SCREENSHOTS / f"{_screenshot_name(request)}{suffix}.png"), full_page=True)
        context.close()
    assert not elsewhere, f"The portal loaded something from another host: {elsewhere}"
    assert not refused, f"The Content-Security-Policy refused: {refused}"


@pytest.fixture
def page(new_page):
    """A fresh 1280x900 browser context per test; saves test-results/screenshots/<test-name>.png at the end."""
    return new_page()


@pytest.fixture
def shot(request):
    """Save a named screenshot mid-journey: shot(page, "home") → <test-name>--home.png."""

    def take(page, label: str):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{_screenshot_name(request)}--{label}.png"), full_page=True)

    return take


@pytest.fixture
def demo(transactional_db):
    """The `make run` demo data (seed_demo refuses to run unless DEBUG is on)."""
    with override_settings(DEBUG=True):
        call_command("seed_demo", stdout=io.StringIO())
    mail.outbox.clear()  # the demo registrations' notifications


@pytest.fixture
def portal(live_server, demo, settings):
    """The live server with demo data, and emails linking to it rather than to PRM_SITE_URL's default."""
    settings.PRM_SITE_URL = live_server.url
    return live_server
