"""The portal under load: dealers registering deals, partner managers reviewing them.

Started by tools/load_test.py, which starts the portal, picks the accounts from the database and
passes them in a JSON file (PRM_LOAD_ACCOUNTS). By hand:

    PRM_LOAD_ACCOUNTS=accounts.json locust -f tools/load/locustfile.py --headless -u 10 -r 5 -t 30s \
        --host http://127.0.0.1:8000

Each simulated person has an account of their own (a dealer user of a dealer no other simulated
person belongs to, or a partner manager), logs in once through allauth's form (staff answer the
two-factor step with a TOTP code computed from their secret, as an authenticator app does), then
works through a weighted mix of pages with 1-3 s between tasks.

Failures: any 4xx/5xx, a redirect to the log-in page (a lost session), a page without the marker
it must show, a form POST that does not redirect (a form re-rendered with errors is a failure,
named by its first error), and a decision whose result page shows an error message.

The portal's limits are respected without changing them: submissions and protection lookups are
counted per clock hour against what the account had already used (PRM_REGISTRATION_SUBMITS_PER_HOUR,
PRM_LOOKUPS_PER_HOUR; the runner reads both from the portal's cache); a task over its budget is
skipped and counted, not sent. Every person sends its own X-Forwarded-For address, as behind the
reverse proxy of production (the runner sets PRM_TRUSTED_PROXY_COUNT=1), so allauth's log-ins per
address per minute see one person per address. A failed log-in is never retried (lock-out).
The protection lookup is vendor staff's page (dealers get a 404 there): a dealer's look-up is the
search of its own registrations by customer name.

When locust quits, who logged in, what was skipped and the final figures (complete, unlike locust's
CSV files) are written to PRM_LOAD_EXTRA (JSON).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import html
import json
import os
import random
import re
import struct
import time
from collections import Counter
from datetime import date, timedelta
from urllib.parse import urlencode, urlparse

from locust import HttpUser, between, events, task
from locust.exception import CatchResponseError
from locust.stats import StatsEntry

ACCOUNTS_FILE = os.environ.get("PRM_LOAD_ACCOUNTS", "")
EXTRA_FILE = os.environ.get("PRM_LOAD_EXTRA", "")
ACCOUNTS: dict = {"dealers": [], "partner_managers": [], "limits": {}, "seed": 0}
if ACCOUNTS_FILE:
    with open(ACCOUNTS_FILE, encoding="utf-8") as fh:
        ACCOUNTS = json.load(fh)

SEED = ACCOUNTS.get("seed", 0)
LIMITS = ACCOUNTS.get("limits", {})
SUBMITS_PER_HOUR = LIMITS.get("submits_per_hour", 30)
LOOKUPS_PER_HOUR = LIMITS.get("lookups_per_hour", 120)
TOTP_PERIOD = ACCOUNTS.get("totp", {}).get("period", 30)  # the portal's MFA_TOTP_PERIOD and MFA_TOTP_DIGITS
TOTP_DIGITS = ACCOUNTS.get("totp", {}).get("digits", 6)
TOTP_MARGIN = 12  # seconds a code must still be valid for when it is sent

COUNTERS: Counter = Counter()  # skipped tasks and log-ins, written to EXTRA_FILE
_pools = {"dealer": list(ACCOUNTS["dealers"]), "pm": list(ACCOUNTS["partner_managers"])}

# --- customers to register: varied, with repeats across dealers so that the conflict check finds some ---

TRADES = {
    "NL": "Bakkerij Installatiebedrijf Autobedrijf Hotel Transport Bouwbedrijf Drukkerij Tuincentrum Garage "
    "Metaalbewerking Elektrotechniek Koeltechniek Groothandel Zorgcentrum Accountantskantoor Logistiek".split(),
    "BE": "Bakkerij Brouwerij Chocolaterie Garage Drukkerij Schrijnwerkerij Verwarming Sanitair Boulangerie "
    "Transport Metaalconstructie Tuinaanleg".split(),
    "DE": "Bäckerei Autohaus Spedition Metallbau Druckerei Elektro Haustechnik Kältetechnik Gartenbau "
    "Maschinenbau Brauerei".split(),
}
FAMILIES = {
    "NL": ["Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder"]
    + ["de Groot", "Bos", "Vos", "Peters", "Hendriks", "van Dijk", "Dekker", "Brouwer"],
    "BE": ["Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems", "Claes", "Goossens", "Wouters"]
    + ["De Smet", "Dubois", "Lambert"],
    "DE": ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz"]
    + ["Hoffmann", "Koch", "Richter"],
}
LEGAL = {
    "NL": ["B.V.", "BV", "V.O.F.", ""],
    "BE": ["BV", "NV", "BVBA", "SRL", ""],
    "DE": ["GmbH", "KG", "GmbH & Co. KG"],
}
CITIES = {
    "NL": [("Utrecht", "35"), ("Amersfoort", "38"), ("Zwolle", "80"), ("Breda", "48"), ("Eindhoven", "56")],
    "BE": [("Antwerpen", "20"), ("Gent", "90"), ("Leuven", "30"), ("Brugge", "80")],
    "DE": [("Köln", "50"), ("Düsseldorf", "40"), ("Aachen", "52"), ("Münster", "48")],
}
FIRST = "Anna Bram Carla Daan Eva Frank Greet Hans Inge Joris Karin Luuk Marloes Niels Olga Pim Rosa Sven".split()
LAST = "Jansen Peeters Müller Visser Claes Smit Schmidt Bakker Maes Meijer".split()
LOOKUP_WORDS = ["Bakkerij", "Transport", "Garage", "Jansen", "de Vries", "Peeters", "Müller", "Hotel", "Bos", "Smit"]


def customer_name(rng: random.Random, country: str) -> str:
    name = f"{rng.choice(TRADES[country])} {rng.choice(FAMILIES[country])}"
    legal = rng.choice(LEGAL[country])
    return f"{name} {legal}".strip()


def postcode(rng: random.Random, country: str, prefix: str) -> str:
    if country == "NL":
        return f"{prefix}{rng.randint(10, 99)} {rng.choice('ABCDEGHJKLMNPRSTVWXZ')}{rng.choice('ABCDEGHJKLMNPRSTVXZ')}"
    if country == "BE":
        return f"{prefix[0]}{rng.randint(100, 999)}"
    return f"{prefix}{rng.randint(100, 999)}"


def vat_number(rng: random.Random, country: str) -> str:
    if country == "NL":
        return f"NL{rng.randint(10**8, 10**9 - 1)}B{rng.randint(1, 99):02d}"
    if country == "BE":
        return f"BE0{rng.randint(10**8, 10**9 - 1)}"
    return f"DE{rng.randint(10**8, 10**9 - 1)}"


# --- two-factor codes, as an authenticator app computes them (RFC 6238 over RFC 4226) ----------------


def totp_code(secret: str, at: float | None = None) -> str:
    counter = int(time.time() if at is None else at) // TOTP_PERIOD
    key = base64.b32decode(secret.strip().replace(" ", "").upper() + "=" * (-len(secret.strip()) % 8))
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = (struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**TOTP_DIGITS
    return f"{value:0{TOTP_DIGITS}d}"


# --- reading pages ------------------------------------------------------------------------------------------

CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
DETAIL_RE = re.compile(r'href="/registrations/(\d+)/"')
ERROR_RES = [  # the most specific first: a field's error, a message, allauth's error list, the form's alert
    re.compile(r'<p class="error"[^>]*>(.*?)</p>', re.S),
    re.compile(r'<li class="message error">(.*?)</li>', re.S),
    re.compile(r'<ul class="errorlist[^"]*"[^>]*>\s*<li>(.*?)</li>', re.S),
    re.compile(r'<div class="alert error"[^>]*>\s*<p>(.*?)</p>', re.S),
]
SUCCESS_RE = re.compile(r'<li class="message success">(.*?)</li>', re.S)
OPTION_RE = re.compile(r'<option value="([^"]*)"([^>]*)>')
PRICE_RE = re.compile(r'data-price="([^"]+)"')


def csrf_token(text: str) -> str | None:
    match = CSRF_RE.search(text)
    return match.group(1) if match else None


def status_text(response) -> str:
    """HTTP 500, or for no answer at all (status 0) what went wrong on the way."""
    if response.status_code:
        return f"HTTP {response.status_code}"
    error = getattr(response, "error", None)
    return f"no response: {type(error).__name__}: {str(error)[:150]}" if error else "no response"


def first_error(text: str) -> str:
    match = next((m for m in (r.search(text) for r in ERROR_RES) if m), None)
    if not match:
        return "no error shown"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).split())[:120]


def select_options(text: str, name: str) -> list[tuple[str, str]]:
    """The (value, attributes) of the options of <select name=name>."""
    start = text.find(f'name="{name}"')
    if start < 0:
        return []
    end = text.find("</select>", start)
    return OPTION_RE.findall(text[start:end])


class Budget:
    """An hourly limit counted per clock hour, as prm.ratelimit counts it, starting from what the
    account had already used in the current hour when the run started."""

    def __init__(self, per_hour: int, used_now: int, window: int):
        self.per_hour, self.used, self.window = per_hour, {window: used_now}, window

    def available(self) -> bool:
        return self.per_hour <= 0 or self.used.get(int(time.time()) // 3600, 0) < self.per_hour

    def take(self) -> bool:
        """Count one request; False (and nothing counted) when the hour's budget is used up."""
        if not self.available():
            return False
        window = int(time.time()) // 3600
        self.used[window] = self.used.get(window, 0) + 1
        return True


# --- the simulated people ---------------------------------------------------------------------------------


def step(weight: int):
    """A task for a person who is logged in. One whose log-in failed idles to the end instead of
    stopping: during the ramp-up locust would start a replacement, for which there is no account."""

    def decorate(method):
        @functools.wraps(method)
        def run(self):
            if self.logged_in:
                return method(self)

        return task(weight)(run)

    return decorate


class PortalUser(HttpUser):
    abstract = True
    wait_time = between(1, 3)
    kind = ""
    label = ""

    def on_start(self):
        self.logged_in = False
        pool = _pools[self.kind]
        if not pool:
            COUNTERS[f"{self.label}: no account left"] += 1
            return
        self.account = pool.pop(0)
        self.rng = random.Random(f"{SEED}:{self.account['email']}")
        self.origin = self.host.rstrip("/")
        self.client.headers["X-Forwarded-For"] = self.account["client_ip"]
        self.client.headers["User-Agent"] = "prm-load-test (locust)"
        self.known_ids: list[int] = []
        self.logged_in = self.log_in()
        COUNTERS[f"{self.label}: logged in" if self.logged_in else f"{self.label}: log-in failed"] += 1

    # --- requests ---

    def page(self, path: str, name: str, marker: str | tuple, params: dict | None = None) -> str | None:
        """GET a page that must answer 200 with `marker` (or one of several) in it; its text, or None."""
        url = path + ("?" + urlencode(params) if params else "")
        with self.client.get(url, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(status_text(response))
                return None
            if "/accounts/login/" in urlparse(response.url).path and not path.startswith("/accounts/"):
                response.failure("redirected to the log-in page (session lost)")
                return None
            markers = marker if isinstance(marker, tuple) else (marker,)
            if not any(m in response.text for m in markers):
                response.failure(f"page without {' or '.join(markers)!r}")
                return None
            response.success()
            return response.text

    def post_form(self, path: str, data: dict, name: str, expect: re.Pattern) -> str | None:
        """POST a form that must redirect to a URL matching `expect`; the redirect's path, or None."""
        headers = {"Origin": self.origin, "Referer": self.origin + path}
        with self.client.post(
            path, data=data, name=name, headers=headers, allow_redirects=False, catch_response=True
        ) as response:
            location = urlparse(response.headers.get("Location", "")).path
            if response.status_code in (301, 302, 303) and expect.fullmatch(location):
                response.success()
                return location
            if response.status_code == 200:
                response.failure(f"form re-rendered: {first_error(response.text)}")
            elif response.status_code in (301, 302, 303):
                response.failure(f"redirected to {location}")
            else:
                response.failure(status_text(response))
            return None

    def remember(self, text: str) -> None:
        for pk in DETAIL_RE.findall(text):
            pk = int(pk)
            if pk not in self.known_ids:
                self.known_ids.append(pk)
        del self.known_ids[:-200]

    # --- logging in ---

    def log_in(self) -> bool:
        text = self.page("/accounts/login/", "auth: log-in form", "csrfmiddlewaretoken")
        token = text and csrf_token(text)
        if not token:
            return False
        data = {"csrfmiddlewaretoken": token, "login": self.account["email"], "password": self.account["password"]}
        after = re.compile(r"/accounts/2fa/authenticate/" if self.account.get("totp_secret") else r"/")
        location = self.post_form("/accounts/login/", data, "auth: log in", after)
        if location is None:
            return False
        if self.account.get("totp_secret"):
            text = self.page(location, "auth: two-factor form", "csrfmiddlewaretoken")
            token = text and csrf_token(text)
            if not token:
                return False
            # Never send a code that may expire on the way: allauth accepts only the current period's
            # code (MFA_TOTP_TOLERANCE 0), checked when the request is handled, which under load can be
            # seconds after it was sent; a person would wait for the next code too. Nor one the portal
            # saw used already (by a run just before this one).
            remaining = TOTP_PERIOD - time.time() % TOTP_PERIOD
            if remaining < TOTP_MARGIN or int(time.time()) // TOTP_PERIOD <= self.account.get("totp_used_counter", -1):
                time.sleep(remaining + 0.2)
            data = {"csrfmiddlewaretoken": token, "code": totp_code(self.account["totp_secret"])}
            if self.post_form(location, data, "auth: two-factor code", re.compile(r"/")) is None:
                return False
        return self.page("/", f"{self.label}: home", "<h1>Welcome") is not None

    def registration_detail(self, pk: int, name: str) -> str | None:
        return self.page(f"/registrations/{pk}/", name, "<h2>Products</h2>")


class DealerUser(PortalUser):
    """A sales rep at a dealer: lists, opens and registers deals; looks at the dealer's dashboard."""

    kind, label = "dealer", "dealer"
    fixed_count = len(_pools["dealer"])

    def on_start(self):
        super().on_start()
        if not self.logged_in:
            return
        self.submits = Budget(SUBMITS_PER_HOUR, self.account.get("submits_used", 0), ACCOUNTS.get("window", 0))
        self.headroom = self.account.get("open_headroom", 10**6)
        self.customers: list[str] = []

    @step(4)
    def registrations(self):
        params = {}
        if self.rng.random() < 0.4:
            params = self.rng.choice(
                [
                    {"page": self.rng.randint(2, 4)},
                    {"status": self.rng.choice(["submitted", "approved", "won", "lost"])},
                    {"ordering": self.rng.choice(["-value", "close", "-submitted"])},
                    {"status": "approved", "expiring": "on"},
                    {"decision_stage": self.rng.choice(["early", "mid", "late"]), "page": 2},
                ]
            )
        name = "dealer: my registrations" + (" (page/filter)" if params else "")
        text = self.page("/registrations/", name, "<h1>My registrations</h1>", params)
        if text:
            self.remember(text)

    @step(3)
    def detail(self):
        if not self.known_ids:
            return self.registrations()
        self.registration_detail(self.rng.choice(self.known_ids), "dealer: registration detail")

    @step(1)
    def search(self):
        """The dealer's own look-up: its registrations by customer name (the protection lookup is
        for vendor staff only)."""
        if self.customers and self.rng.random() < 0.5:
            words = self.rng.choice(self.customers).split()
            query = " ".join(words[: self.rng.randint(1, len(words))])
        else:
            query = self.rng.choice(LOOKUP_WORDS)
        text = self.page(
            "/registrations/", "dealer: search my registrations", "<h1>My registrations</h1>", {"q": query}
        )
        if text:
            self.remember(text)

    @step(2)
    def dashboard(self):
        if self.rng.random() < 0.3:
            self.page("/", "dealer: home", "<h1>Welcome")
        else:
            self.page("/dashboard/dealer/", "dealer: dashboard", ": dashboard</h1>")

    @step(1)
    def register(self):
        if self.headroom <= 0:
            COUNTERS["dealer: submit skipped (open-registration cap of the dealer's tier)"] += 1
            return
        if not self.submits.available():
            COUNTERS["dealer: submit skipped (PRM_REGISTRATION_SUBMITS_PER_HOUR budget)"] += 1
            return
        cap_page = "reached its registration limit"
        text = self.page("/registrations/new/", "dealer: new registration form", ("<h1>Register a deal</h1>", cap_page))
        if text is None:
            return
        if cap_page in text:
            self.headroom = 0
            COUNTERS["dealer: submit skipped (open-registration cap of the dealer's tier)"] += 1
            return
        data = self.registration_data(text)
        if data is None:
            COUNTERS["dealer: submit skipped (no products on the form)"] += 1
            return
        self.submits.take()
        location = self.post_form(
            "/registrations/new/", data, "dealer: submit registration", re.compile(r"/registrations/\d+/")
        )
        if location is None:
            return
        self.headroom -= 1
        pk = int(location.strip("/").split("/")[-1])
        self.known_ids.append(pk)
        with self.client.get(location, name="dealer: registration detail (after submit)", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(status_text(r))
            elif "is registered" not in r.text:
                r.failure(f"no confirmation: {first_error(r.text)}")
            else:
                r.success()

    def registration_data(self, text: str) -> dict | None:
        rng = self.rng
        token = csrf_token(text)
        products = [
            (value, PRICE_RE.search(attrs).group(1))
            for value, attrs in select_options(text, "lines-0-product")
            if value and PRICE_RE.search(attrs)
        ]
        if not token or not products:
            return None
        country = rng.choices(["NL", "BE", "DE"], weights=[6, 3, 1])[0]
        city, prefix = rng.choice(CITIES[country])
        existing = [value for value, _ in select_options(text, "customer-existing") if value]
        if self.customers and rng.random() < 0.1:
            name = rng.choice(self.customers)  # the same customer again: the dealer's own duplicate
        else:
            name = customer_name(rng, country)
        self.customers.append(name)
        del self.customers[:-50]
        first, last = rng.choice(FIRST), rng.choice(LAST)
        data = {
            "csrfmiddlewaretoken": token,
            "customer-existing": rng.choice(existing) if existing and rng.random() < 0.15 else "",
            "customer-name": name,
            "customer-city": city,
            "customer-postcode": postcode(rng, country, prefix),
            "customer-country": country,
            "customer-website": "",
            "customer-vat_number": "",
            "customer-company_number": "",
            "deal-contact_name": f"{first} {last}",
            "deal-contact_email": f"{first.lower()}.{last.lower()}@customer.example".replace("ü", "u"),
            "deal-contact_phone": rng.choice(["", "+31 6 1234 5678", "010-1234567"]),
            "deal-expected_close_date": (date.today() + timedelta(days=rng.randint(14, 200))).isoformat(),
            "deal-decision_stage": rng.choice(["", "early", "mid", "late"]),
            "deal-competitors": rng.choice(["", "", "Competitor A", "Competitor B, Competitor C"]),
            "deal-next_steps": rng.choice(["", "Demo next week.", "Quote sent; waiting for the board."]),
        }
        if rng.random() < 0.3:
            data["customer-vat_number"] = vat_number(rng, country)
        if rng.random() < 0.2:
            data["customer-website"] = "www." + re.sub(r"[^a-z]", "", name.lower())[:20] + ".example"
        lines = rng.sample(products, k=min(len(products), rng.choice([1, 1, 2, 3])))
        data.update(
            {
                "lines-TOTAL_FORMS": str(len(lines)),
                "lines-INITIAL_FORMS": "0",
                "lines-MIN_NUM_FORMS": "1",
                "lines-MAX_NUM_FORMS": "50",
            }
        )
        for i, (product, price) in enumerate(lines):
            quantity = rng.randint(1, 20)
            value = "" if rng.random() < 0.6 else f"{float(price) * quantity * rng.uniform(0.8, 1.0):.2f}"
            data.update(
                {f"lines-{i}-product": product, f"lines-{i}-quantity": str(quantity), f"lines-{i}-value": value}
            )
        return data


class PartnerManagerUser(PortalUser):
    """A partner manager: works the review queue, decides registrations, looks customers up."""

    kind, label = "pm", "pm"
    fixed_count = len(_pools["pm"])

    def on_start(self):
        super().on_start()
        if not self.logged_in:
            return
        self.lookups = Budget(LOOKUPS_PER_HOUR, self.account.get("lookups_used", 0), ACCOUNTS.get("window", 0))
        self.decided: set[int] = set()

    @step(4)
    def queue(self):
        params = {}
        if self.rng.random() < 0.3:
            params = self.rng.choice([{"status": "submitted"}, {"overdue": "on"}, {"page": 2}, {"status": "escalated"}])
        name = "pm: review queue" + (" (page/filter)" if params else "")
        text = self.page("/review/", name, "<h1>Review queue</h1>", params)
        if text:
            self.remember(text)

    @step(3)
    def detail(self):
        if not self.known_ids:
            return self.queue()
        self.registration_detail(self.rng.choice(self.known_ids), "pm: registration detail")

    @step(2)
    def review(self):
        """Open a submitted registration from the queue and decide it through the review form:
        approve when the page offers it (no blocking conflict), otherwise ask for information."""
        text = self.page("/review/", "pm: review queue (submitted)", "<h1>Review queue</h1>", {"status": "submitted"})
        if text is None:
            return
        waiting = [int(pk) for pk in DETAIL_RE.findall(text) if int(pk) not in self.decided]
        if not waiting:
            COUNTERS["pm: review skipped (nothing submitted in the queue)"] += 1
            return
        pk = self.rng.choice(waiting[:10])
        self.decided.add(pk)
        text = self.registration_detail(pk, "pm: registration detail")
        if text is None:
            return
        token = csrf_token(text)
        can_approve = "Approve and protect</button>" in text
        can_ask = f"/registrations/{pk}/review/request_info/" in text
        if not token or not (can_approve or can_ask):
            COUNTERS["pm: review skipped (no decision offered on the page)"] += 1
            return
        if can_approve and (not can_ask or self.rng.random() < 0.75):
            action, reason = "approve", self.rng.choice(["", "Approved: first registration of this customer."])
        else:
            action, reason = "request_info", "Which site of the customer is this for, and who decides?"
        data = {"csrfmiddlewaretoken": token, "reason": reason, "internal_note": "load test"}
        path = f"/registrations/{pk}/review/{action}/"
        name = f"pm: {action.replace('_', ' ')} registration"
        headers = {"Origin": self.origin, "Referer": f"{self.origin}/registrations/{pk}/"}
        # A decision always redirects to the registration; whether it was taken shows in the message there.
        with self.client.post(
            path, data=data, name=name, headers=headers, allow_redirects=False, catch_response=True
        ) as response:
            location = urlparse(response.headers.get("Location", "")).path
            if response.status_code != 302 or location != f"/registrations/{pk}/":
                response.failure(f"{status_text(response)} to {location or '-'}")
                return
            with self.client.get(location, name="pm: registration detail (after decision)", catch_response=True) as r:
                if r.status_code != 200:
                    r.failure(status_text(r))
                    response.failure(f"result page: {status_text(r)}")
                    return
                r.success()
                if SUCCESS_RE.search(r.text):
                    response.success()
                else:
                    response.failure(f"not decided: {first_error(r.text)}")

    @step(2)
    def lookup(self):
        if not self.lookups.take():
            COUNTERS["pm: lookup skipped (PRM_LOOKUPS_PER_HOUR budget)"] += 1
            return
        query = self.rng.choice(LOOKUP_WORDS)
        if self.rng.random() < 0.5:
            country = self.rng.choice(["NL", "BE", "DE"])
            query = customer_name(self.rng, country)
        self.page("/lookup/", "pm: protection lookup", "<h1>Protection lookup</h1>", {"q": query})

    @step(1)
    def dashboard(self):
        self.page("/dashboard/team/", "pm: team dashboard", "<h1>Your dealers</h1>")

    @step(1)
    def forecast(self):
        self.page("/forecast/", "pm: forecast", "<h1>Forecast</h1>")


# --- the final figures -------------------------------------------------------------------------------------
# Locust's CSV files are rewritten once a second while it runs and not once more at the end, so the
# requests of the last second (those finishing within --stop-timeout too) can be missing from them.
# The figures below are taken when locust quits, after every user has stopped: complete.

_environment = None


@events.init.add_listener
def _remember_environment(environment, **kwargs):
    global _environment
    _environment = environment


def _entry(entry) -> dict:
    return {
        "method": entry.method or "",
        "name": entry.name,
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "rps": entry.total_rps,
        "avg_ms": entry.avg_response_time,
        "p50_ms": entry.get_response_time_percentile(0.5) if entry.num_requests else None,
        "p95_ms": entry.get_response_time_percentile(0.95) if entry.num_requests else None,
        "max_ms": entry.max_response_time if entry.num_requests else None,
    }


def _error_text(error) -> str:
    if isinstance(error, CatchResponseError):
        return str(error.args[0])
    return error if isinstance(error, str) else repr(error)


@events.quit.add_listener
def _write_extra(exit_code, **kwargs):
    if not EXTRA_FILE:
        return
    report: dict = {"counters": dict(COUNTERS), "exit_code": exit_code}
    if _environment is not None and _environment.runner is not None:
        stats = _environment.runner.stats
        report["stats"] = [_entry(e) for e in stats.entries.values()]
        report["total"] = _entry(stats.total)
        work = StatsEntry(stats, "all except log-in", "")
        for entry in stats.entries.values():
            if not entry.name.startswith("auth:"):
                work.extend(entry)
        report["work"] = _entry(work)
        report["errors"] = [
            {"method": e.method, "name": e.name, "error": _error_text(e.error), "count": e.occurrences}
            for e in stats.errors.values()
        ]
        report["exceptions"] = [
            {"count": row["count"], "message": row["msg"], "traceback": row["traceback"]}
            for row in _environment.runner.exceptions.values()
        ]
    with open(EXTRA_FILE, "w", encoding="utf-8") as fh:
        json.dump(report, fh)
