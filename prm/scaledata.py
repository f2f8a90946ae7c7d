"""Synthetic data at scale: word lists, name variants, bulk COPY and the `generate_scale_data` generator.

The first part holds what the measuring tools share (tools/measure_conflict_check.py and
tools/measure_tier_recompute.py import it from here): Dutch, Belgian and German business names and
the variants dealers type (legal forms, case, word order, typos), VAT numbers, websites, postcodes;
the vendor's sales, certification holdings and satisfaction scores per reseller; and COPY helpers.

The second part is the generator behind `manage.py generate_scale_data` (ScaleGenerator): a whole
programme — regions, vendor staff, dealers with their people, territories, named accounts, a
catalogue, customers as each dealer knows them, five years of registrations with their lines,
history, extension requests, flags and conflicts, and two years of the vendor's sales — written with
COPY in batches (PostgreSQL) or plain INSERTs (SQLite, small sizes only). Everything random comes
from the seed; times are relative to the anchor date (default: today), whose 07:00 local time is
"now" for the data: the nightly jobs of that night have run (expiry 01:00, anonymisation 03:45,
expiry warnings 06:30, stale flags 06:45), so none of them finds work left over from the past.

How a registration comes about: all first submissions are drawn first (per dealer, 25 % more every
year, working days, office hours) and sorted, so ids and REG-YYYY-NNNNNN numbers follow submission
time as in the portal. Then, in that order, each one gets its dealer's customer (an earlier one, a
real customer several dealers know — each dealer with its own spelling — or a new one), its lines,
and a life: the moves of deals.services.TRANSITIONS with the fields each move sets (review clock
and SLA marks, decisions, protection and its extensions, outcomes, expiry), cut off at "now".
Conflicts are looked for, with deals.matching, among the other dealers' registrations of the same
real customer that were still active at submission; a conflicting (not merely related) one is then
decided as the portal's services would: the earliest keeps the customer, an escalation to the
regional director, a withdrawal, or a dismissal as another customer. Channel-rule flags follow
deals.conflicts._channel_rule_flags (named accounts, exclusive and own territories, enterprise
value, direct-only lines, the dealer's own duplicate).

Simplifications: customers that merely look alike (two unrelated "Bakkerij Jansen" in one country)
are not flagged against each other; territories and tiers do not change over the five years; the
dealer's open registrations are kept well below its tier's cap through shorter sales cycles for busy
dealers, not by refusing submissions. Not generated: log-in records, organisation history,
improvement plans, invitations, tier evaluations (the standing of each evaluated dealer and its
first tier change are), outbox e-mails.
"""

from __future__ import annotations

import bisect
import calendar
import io
import json
import math
import os
import queue
import random
import re
import resource
import sys
import threading
import time
import unicodedata
from array import array
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

# --- word lists ------------------------------------------------------------------------------------

TRADES = {
    "NL": """Bakkerij Slagerij Installatiebedrijf Autobedrijf Tandartspraktijk Hotel Camping Transport
        Bouwbedrijf Schildersbedrijf Loodgietersbedrijf Timmerbedrijf Hoveniersbedrijf Kapsalon
        Fysiotherapie Huisartsenpraktijk Accountantskantoor Advocatenkantoor Notariskantoor Makelaardij
        Garage Rijschool Restaurant Eetcafé Brasserie Bloemisterij Kwekerij Drukkerij Metaalbewerking
        Elektrotechniek Dakdekkersbedrijf Tegelhandel Keukenstudio Fietsenwinkel Opticien Apotheek
        Dierenkliniek Schoonmaakbedrijf Verhuisbedrijf Aannemersbedrijf Zorgboerderij Kinderopvang
        Administratiekantoor Groothandel Handelsonderneming Vishandel Kaashandel Wijnhandel
        Machinefabriek Staalbouw Houthandel Loonbedrijf Melkveebedrijf Tuincentrum Bouwmaterialen
        Interieurbouw Stukadoorsbedrijf Glazenwasserij Koeltechniek Installatietechniek Logistiek""".split(),
    "BE": """Bakkerij Slagerij Beenhouwerij Installatiebedrijf Autobedrijf Tandartspraktijk Hotel Camping
        Transport Bouwonderneming Schrijnwerkerij Schilderwerken Dakwerken Frituur Brouwerij
        Chocolaterie Boulangerie Boucherie Garage Brasserie Taverne Immo Kapsalon Kinesitherapie
        Boekhoudkantoor Advocatenkantoor Notariaat Drukkerij Elektriciteitswerken Sanitair Verwarming
        Tuinaanleg Bloemen Apotheek Dierenartsenpraktijk Schoonmaak Verhuizingen Aannemingen
        Groothandel Vishandel Wijnhandel Metaalconstructie Houthandel Landbouwbedrijf Tuincentrum
        Bouwmaterialen Interieur Keukens Fietsen Optiek Traiteur Restaurant Bistro""".split(),
    "DE": """Bäckerei Metzgerei Autohaus Zahnarztpraxis Hotel Gasthaus Spedition Bauunternehmen Elektro
        Sanitär Heizungsbau Malerbetrieb Dachdeckerei Tischlerei Schreinerei Steuerberatung
        Rechtsanwaltskanzlei Ingenieurbüro Gartenbau Autowerkstatt Physiotherapie Apotheke Druckerei
        Maschinenbau Metallbau Getränkehandel Friseursalon Immobilien Fahrschule Reisebüro Landhandel
        Fliesenleger Zimmerei Kältetechnik Haustechnik Logistik Transporte Bauelemente Gebäudereinigung
        Umzüge Blumenhaus Gärtnerei Brauerei Weinhandel Holzhandel Baustoffe Küchenstudio Optik
        Tierarztpraxis Kfz-Service""".split(),
}
FAMILIES = {
    "NL": [
        "Jansen",
        "de Vries",
        "van den Berg",
        "Bakker",
        "Visser",
        "Smit",
        "Meijer",
        "de Boer",
        "Mulder",
        "de Groot",
        "Bos",
        "Vos",
        "Peters",
        "Hendriks",
        "Dekker",
        "van Leeuwen",
        "Dijkstra",
        "Brouwer",
        "de Wit",
        "van Dijk",
        "Janssen",
        "de Jong",
        "van der Meer",
        "Kok",
        "Jacobs",
        "de Haan",
        "Vermeulen",
        "van den Heuvel",
        "van der Veen",
        "van den Broek",
        "de Bruijn",
        "de Graaf",
        "Schouten",
        "van Beek",
        "Willems",
        "van Vliet",
        "Hoekstra",
        "Maas",
        "Verhoeven",
        "Koster",
        "van Dam",
        "Prins",
        "Blom",
        "Huisman",
        "Kuipers",
        "van Wijk",
        "Post",
        "Kuiper",
        "Veenstra",
        "Kramer",
        "van den Brink",
        "Scholten",
        "Postma",
        "Martens",
        "Vink",
        "de Ruiter",
        "Timmermans",
        "Groen",
        "Gerritsen",
        "Jonker",
        "van Loon",
        "Boer",
        "van der Linden",
        "Bosch",
        "Kooistra",
        "Hermans",
        "Wouters",
        "Hoogendoorn",
        "Evers",
        "Smits",
        "van der Heijden",
        "Sanders",
        "Brink",
        "Verbeek",
        "Bakker",
        "Molenaar",
        "Zijlstra",
        "van Rijn",
        "Wolters",
        "Haverkamp",
        "Nijhuis",
        "Oosterhuis",
        "Wessels",
        "Pronk",
    ],
    "BE": [
        "Peeters",
        "Janssens",
        "Maes",
        "Jacobs",
        "Mertens",
        "Willems",
        "Claes",
        "Goossens",
        "Wouters",
        "De Smet",
        "Dubois",
        "Lambert",
        "Dupont",
        "Martin",
        "Vermeulen",
        "Van den Bossche",
        "De Clercq",
        "Pauwels",
        "Hermans",
        "Aerts",
        "Desmet",
        "Van Damme",
        "Michiels",
        "Declercq",
        "Leclercq",
        "Lemaire",
        "Verstraete",
        "De Backer",
        "Stevens",
        "Cools",
        "Claeys",
        "Smets",
        "Lenaerts",
        "Dumont",
        "Van de Velde",
        "Van Hecke",
        "De Vos",
        "Coppens",
        "Segers",
        "Verhaegen",
        "Hendrickx",
        "Vandenberghe",
        "Wuyts",
        "Dierckx",
        "Baert",
        "Verbeke",
        "Moens",
        "Thys",
        "Bogaerts",
        "Van Acker",
    ],
    "DE": [
        "Müller",
        "Schmidt",
        "Schneider",
        "Fischer",
        "Weber",
        "Meyer",
        "Wagner",
        "Becker",
        "Schulz",
        "Hoffmann",
        "Schäfer",
        "Koch",
        "Bauer",
        "Richter",
        "Klein",
        "Wolf",
        "Schröder",
        "Neumann",
        "Schwarz",
        "Zimmermann",
        "Braun",
        "Krüger",
        "Hofmann",
        "Hartmann",
        "Lange",
        "Schmitt",
        "Werner",
        "Schmitz",
        "Krause",
        "Meier",
        "Lehmann",
        "Schmid",
        "Schulze",
        "Maier",
        "Köhler",
        "Herrmann",
        "König",
        "Walter",
        "Mayer",
        "Huber",
        "Kaiser",
        "Fuchs",
        "Peters",
        "Lang",
        "Scholz",
        "Möller",
        "Weiß",
        "Jung",
        "Hahn",
        "Schubert",
        "Vogel",
        "Friedrich",
        "Keller",
        "Günther",
        "Frank",
        "Berger",
        "Winkler",
        "Roth",
        "Beck",
        "Lorenz",
        "Baumann",
        "Franke",
        "Albrecht",
        "Ludwig",
        "Winter",
        "Kraus",
        "Martin",
        "Schumacher",
    ],
}
PLACES = {
    "NL": """Amsterdam Rotterdam Utrecht Eindhoven Groningen Tilburg Almere Breda Nijmegen Apeldoorn
        Haarlem Arnhem Enschede Amersfoort Zaandam Zwolle Leiden Maastricht Dordrecht Ede Alkmaar Emmen
        Delft Deventer Venlo Helmond Oss Hilversum Leeuwarden Assen Goes Middelburg Harderwijk Veenendaal
        Roermond Sneek Heerenveen Zeist Gouda Hoorn Purmerend Woerden Kampen Meppel Doetinchem Tiel
        Zutphen Weert Hengelo Almelo Oldenzaal Drachten Schagen Heerhugowaard Barneveld Nunspeet""".split(),
    "BE": """Antwerpen Gent Brugge Leuven Mechelen Aalst Hasselt Kortrijk Oostende Sint-Niklaas Genk
        Roeselare Turnhout Brussel Liège Namur Charleroi Mons Wavre Waregem Lier Geel Tienen Ieper
        Dendermonde Lokeren Herentals Mol Beveren Tongeren Diest Ninove Deinze Torhout Tielt""".split(),
    "DE": """Berlin Hamburg München Köln Frankfurt Düsseldorf Dortmund Essen Bremen Hannover Duisburg
        Münster Aachen Bielefeld Bonn Kleve Emmerich Bocholt Krefeld Mönchengladbach Osnabrück Oldenburg
        Paderborn Wesel Nordhorn Lingen Gronau Goch Borken Coesfeld Rheine Ahaus Meppen Leer Emden
        Viersen Neuss Moers Geldern Xanten""".split(),
}
FANTASY = {
    "NL": (
        "De Gouden|De Zilveren|De Groene|De Witte|De Oude|De Nieuwe|De Blauwe|De Rode|Het Oude|De Vrolijke".split("|"),
        """Leeuw Molen Ster Zwaan Eik Linde Haven Brug Toren Korenschoof Hoeve Akker Bron Wieken Klaver
        Vlinder Zon Maan Horizon Kroon Pauw Valk Hert Ketel Sleutel""".split(),
    ),
    "BE": (
        "De Gouden|De Zilveren|De Groene|De Witte|De Oude|Le Petit|La Belle|Au Bon|De Kleine|Den".split("|"),
        """Leeuw Molen Ster Zwaan Eik Linde Haven Brug Toren Hoeve Akker Bron Klaver Zon Kroon Pauw
        Valk Hert Anker Moulin Soleil Coin Pain Panier""".split(),
    ),
    "DE": (
        "Zum Goldenen|Zur Alten|Zum Weißen|Zum Grünen|Zur Neuen|Zum Roten|Zum Schwarzen|Zur Blauen".split("|"),
        """Löwen Mühle Stern Schwan Eiche Linde Hafen Brücke Turm Hirsch Adler Krone Anker Rose Sonne
        Bären Ochsen Lamm Hof Quelle""".split(),
    ),
}
BRAND_HEADS = """Techno Euro Prima Nova Multi Inter Flex Pro Top Duo Mega Eco Bio Smart Total Quick
    Alpha Delta Omega Solid Green Blue Star Noord Zuid Oost West Hollands Vlaams Rhein Ems Maas
    Kempen Twente Brabant Veluwe Zeeland Limburg Eifel Sauer Rijn Dijk Polder Duin""".split()
BRAND_TAILS = """tech bouw service logistics solutions systems groep care vision line point net works
    plan team partners projects montage support consult trade data print clean energy""".split()
FORMS = {
    "NL": ["B.V.", "BV", "B.V.", "V.O.F.", "VOF", "Holding B.V.", "", "", "", "C.V.", "B.V.", "bv"],
    "BE": ["NV", "BV", "BVBA", "VOF", "CommV", "SRL", "SA", "", "", "bv", "nv", "SPRL"],
    "DE": ["GmbH", "GmbH & Co. KG", "KG", "e.K.", "UG (haftungsbeschränkt)", "OHG", "AG", "", "GmbH", "gmbh"],
}
INITIALS = "ABCDEFGHJKLMNPRSTW"


def _pick(rng: random.Random, options):
    return options[int(rng.random() * len(options))]


def business_name(rng: random.Random, country: str) -> str:
    trade, family, place = _pick(rng, TRADES[country]), _pick(rng, FAMILIES[country]), _pick(rng, PLACES[country])
    pattern = rng.random()
    if pattern < 0.22:
        core = f"{trade} {family}"
    elif pattern < 0.34:
        core = f"{family} {trade}"
    elif pattern < 0.50:
        core = f"{trade} {family} {place}"
    elif pattern < 0.60:
        adjective, noun = _pick(rng, FANTASY[country][0]), _pick(rng, FANTASY[country][1])
        core = f"{trade} {adjective} {noun}"
    elif pattern < 0.68:
        sons = {"NL": "& Zonen", "BE": "& Zonen", "DE": "& Söhne"}[country]
        core = f"{family} {sons}" + (f" {trade}" if rng.random() < 0.5 else "")
    elif pattern < 0.76:
        other = _pick(rng, FAMILIES[country])
        core = f"{family} & {other} {trade}"
    elif pattern < 0.84:
        core = f"{_pick(rng, INITIALS)}. {family} {trade}"
    elif pattern < 0.90:
        core = f"{trade} {place}"
    else:
        core = f"{_pick(rng, BRAND_HEADS)}{_pick(rng, BRAND_TAILS)}" + (f" {place}" if rng.random() < 0.4 else "")
    form = _pick(rng, FORMS[country])
    if form and country == "BE" and rng.random() < 0.3:
        return f"{form} {core}"  # the Belgian habit: "NV Peeters Bouw"
    return f"{core} {form}".strip()


def postcode(rng: random.Random, country: str) -> str:
    if country == "NL":
        return f"{rng.randint(1000, 9999)} {rng.choice('ABCDEFGHJKLMNPRSTVWXZ')}{rng.choice('ABCDEFGHJKLMNPRSTVWXZ')}"
    if country == "BE":
        return str(rng.randint(1000, 9999))
    return f"{rng.randint(10000, 99999)}"


def vat_number(rng: random.Random, country: str) -> tuple[str, str]:
    """(VAT number as typed, company number as typed)."""
    digits = f"{rng.randint(0, 999_999_999):09d}"
    if country == "NL":
        vat = f"NL{digits}B{rng.randint(1, 9):02d}"
        company = f"{rng.randint(10_000_000, 99_999_999)}" if rng.random() < 0.5 else ""
    elif country == "BE":
        kbo = f"0{digits}"
        vat = rng.choice([f"BE{kbo}", f"BE {kbo[:4]}.{kbo[4:7]}.{kbo[7:]}", f"be{kbo}"])
        company = ""
    else:
        vat = f"DE{digits}"
        company = f"HRB {rng.randint(1000, 99999)}" if rng.random() < 0.4 else ""
    return vat, company


def website(rng: random.Random, name: str, country: str, city: str) -> str:
    slug = "".join(c for c in name.lower().split(" b.v")[0].split(" gmbh")[0] if c.isalnum())[:40]
    if rng.random() < 0.3:
        slug += "-" + "".join(c for c in city.lower() if c.isalnum())
    tld = {"NL": ".nl", "BE": ".be", "DE": ".de"}[country]
    return rng.choice(["https://www.", "www.", "http://", ""]) + slug + rng.choice([tld, tld, tld, ".com", ".eu"])


# --- variants of a name, as dealers type them --------------------------------------------------------


def typo(rng: random.Random, name: str) -> str:
    words = name.split()
    long_words = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not long_words:
        return name + "s"
    i = rng.choice(long_words)
    w = words[i]
    p = rng.randint(1, len(w) - 2)
    kind = rng.random()
    if kind < 0.3:
        w = w[:p] + w[p + 1] + w[p] + w[p + 2 :]  # swapped letters
    elif kind < 0.55:
        w = w[:p] + w[p + 1 :]  # dropped letter
    elif kind < 0.8:
        w = w[:p] + rng.choice("aeiounrst") + w[p + 1 :]  # changed letter
    else:
        w = w[:p] + w[p] + w[p:]  # doubled letter
    words[i] = w
    return " ".join(words)


def variant(rng: random.Random, name: str, country: str) -> str:
    """Another way of writing the same name: legal form changed/dropped, word order, case."""
    core = name
    for form in sorted({f for f in FORMS[country] if f}, key=len, reverse=True):
        if core.endswith(" " + form):
            core = core[: -len(form) - 1]
            break
        if core.startswith(form + " "):
            core = core[len(form) + 1 :]
            break
    kind = rng.random()
    if kind < 0.35:
        return f"{core} {_pick(rng, [f for f in FORMS[country] if f])}"
    if kind < 0.55:
        return core.upper() if rng.random() < 0.5 else core.lower()
    if kind < 0.8 and len(core.split()) >= 2:
        words = core.split()
        return " ".join(words[1:] + words[:1])
    return core


def _weighted(rng: random.Random, pairs, default):
    x = rng.random()
    for value, weight in pairs:
        if x < weight:
            return value
        x -= weight
    return default


# --- the vendor's sales, certifications and satisfaction per reseller ---------------------------------

SALE_CITIES = {
    "NL": "Amsterdam Rotterdam Utrecht Eindhoven Groningen Tilburg Almere Breda Nijmegen Apeldoorn Haarlem "
    "Arnhem Enschede Amersfoort Zwolle Leiden Maastricht Dordrecht Ede Alkmaar Delft Deventer Venlo".split(),
    "BE": "Antwerpen Gent Brugge Leuven Mechelen Aalst Hasselt Kortrijk Oostende Genk Roeselare Turnhout "
    "Brussel Liège Namur Charleroi Mons Wavre Arlon".split(),
    "DE": "Köln Düsseldorf Dortmund Essen Duisburg Münster Aachen Bielefeld Bonn Kleve Krefeld Osnabrück "
    "Oldenburg Hamburg Bremen Hannover Emden Leer Meppen".split(),
}
SALE_CUSTOMER_WORDS = """Bakkerij Autobedrijf Hotel Transport Bouwbedrijf Garage Restaurant Drukkerij Apotheek
    Groothandel Spedition Metallbau Tischlerei Brouwerij Traiteur Kinesitherapie Logistik Zorg""".split()
SALE_FAMILIES = """Jansen de Vries Bakker Visser Smit Meijer Peeters Maes Claes Wouters Müller Schmidt Fischer
    Weber Becker Koch Hoffmann Wagner Dubois Lambert""".split()
CERTIFICATIONS = [
    ("Installer basic", "inst-basic"),
    ("Installer advanced", "inst-adv"),
    ("Service technician", "service"),
    ("Pre-sales engineer", "presales"),
    ("Solution architect", "architect"),
    ("Security specialist", "security"),
    ("Cloud specialist", "cloud"),
    ("Sales professional", "sales-pro"),
]


def reseller_tier_activity(
    rng: random.Random,
    pk: int,
    size: float,
    country: str,
    people: list[int],
    *,
    day: date,
    max_sales: int,
    line_ids: list[int],
    cert_ids: list[int],
    distributors: list[int],
    ids: dict[str, int],
    sales: list[dict],
    holdings: list[dict],
    scores: list[dict],
    links: set[tuple[int, int]],
    days_ahead: int = 3,
    erp_prefix: str = "MEAS-",
    registered_sales: bool = True,
) -> None:
    """One reseller's sales lines over the two years up to `day` (and `days_ahead` days after it),
    certification holdings and satisfaction scores, appended to `sales`, `holdings` and `scores`
    (dicts of attname -> value); the (reseller, distributor) pairs the sales went through are added
    to `links`. `ids` holds the next "sale", "holding" and "score" ids and is advanced.

    ~10 % of the resellers sell nothing; the number of sales and their size follow `size` (a long
    tail); each sale goes through one of `distributors` for ~25 % of them. With `registered_sales`,
    a share of the sales counts as registered before the sale, with a made-up reference (the
    measuring tool does not link registrations); without it no sale is (the scale generator links
    sales to real won registrations itself)."""
    from django.utils import timezone

    def at(d: date, hour: int = 2) -> datetime:
        return timezone.make_aware(datetime(d.year, d.month, d.day, hour, rng.randint(0, 59)))

    last_sale_day = day + timedelta(days=days_ahead)
    first_sale_day = day - timedelta(days=729)
    # how many sales lines in the two years: ~10 % none, else a long tail capped at max_sales
    n_sales = 0 if rng.random() < 0.10 else min(max_sales, max(1, round(size * 7)))
    typical = 12_000 * size**0.6  # bigger dealers also make bigger deals
    trend = rng.lognormvariate(0.05, 0.35)  # this year's share against last year's
    p_this_year = trend / (1 + trend)
    compliance = rng.betavariate(1.2, 2.8)  # mean 0.3
    via = _pick(rng, distributors) if rng.random() < 0.35 and distributors else None
    for _ in range(n_sales):
        if rng.random() < p_this_year:
            sold = day - timedelta(days=rng.randint(-days_ahead, 364))  # the last 365 days (and the days after)
        else:
            sold = day - timedelta(days=rng.randint(365, 729))
        sold = max(first_sale_day, min(sold, last_sale_day))
        registered = rng.random() < compliance and registered_sales
        through = via if via and rng.random() < 0.7 else None
        if through:
            links.add((pk, through))
        customer_country = country if rng.random() < 0.9 else _pick(rng, list(SALE_CITIES))
        sale_id = ids["sale"]
        sales.append(
            {
                "id": sale_id,
                "erp_line_id": f"{erp_prefix}{sale_id:09d}",
                "sold_on": sold,
                "reseller_id": pk,
                "distributor_id": through,
                "customer_name": f"{_pick(rng, SALE_CUSTOMER_WORDS)} {_pick(rng, SALE_FAMILIES)} {rng.randint(1, 999)}",
                "customer_city": _pick(rng, SALE_CITIES[customer_country]),
                "customer_country": customer_country,
                "product_line_id": _pick(rng, line_ids),
                "amount": Decimal(round(rng.lognormvariate(math.log(typical), 0.8), 2)).quantize(Decimal("0.01")),
                "registration_reference": f"REG-{sold.year}-{rng.randint(1, 999999):06d}" if registered else "",
                "registered_before_sale": registered,
                "imported_at": at(sold + timedelta(days=1)),
            }
        )
        ids["sale"] = sale_id + 1
    # certifications: 0-5 distinct ones, more likely for bigger dealers; about a third expired
    n_certs = min(5, _weighted(rng, ((0, 0.28), (1, 0.22), (2, 0.2), (3, 0.14), (4, 0.1)), 5) + (size > 3))
    for j, cert in enumerate(rng.sample(cert_ids, n_certs)):
        holdings.append(
            {
                "id": ids["holding"],
                "organisation_id": pk,
                "person_id": people[j % len(people)],
                "certification_id": cert,
                "valid_until": day + timedelta(days=rng.randint(-400, 800)),
            }
        )
        ids["holding"] += 1
    # satisfaction: ~40 % of the dealers have scores
    if rng.random() < 0.4:
        quality = rng.uniform(3.0, 4.9)
        for _ in range(rng.randint(1, 3 + min(10, n_sales // 3))):
            scores.append(
                {
                    "id": ids["score"],
                    "organisation_id": pk,
                    "score": min(5, max(1, round(rng.gauss(quality, 0.8)))),
                    "recorded_on": day - timedelta(days=rng.randint(-days_ahead, 729)),
                    "sale_id": None,
                    "registration_id": None,
                    "recorded_by_id": None,
                }
            )
            ids["score"] += 1


# --- COPY helpers ------------------------------------------------------------------------------------


def _copy_value(value) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def copy_rows(model, rows: list[dict]) -> None:
    """COPY rows (dicts of attname -> value) into model's table; missing fields get their defaults."""
    from django.db import connection, models
    from django.utils import timezone

    fields = model._meta.concrete_fields
    defaults = {}
    for f in fields:
        if f.has_default():
            defaults[f.attname] = f.get_default()
        elif getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            defaults[f.attname] = timezone.now() if isinstance(f, models.DateTimeField) else timezone.localdate()
        elif f.null:
            defaults[f.attname] = None
        elif f.blank and f.get_internal_type() in ("CharField", "TextField", "EmailField", "URLField", "SlugField"):
            defaults[f.attname] = ""
    names = [f.attname for f in fields]
    missing = [n for n in names if n not in defaults and rows and n not in rows[0]]
    if missing:
        raise ValueError(f"{model.__name__}: no value for {missing} (a new required field? update the loader)")
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(_copy_value(row[n] if n in row else defaults[n]) for n in names))
        buffer.write("\n")
    buffer.seek(0)
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(f"COPY {model._meta.db_table} ({columns}) FROM STDIN", buffer)


def _setval(*models) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for model in models:
            table = model._meta.db_table
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 1))"
            )


def _next_id(model) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {model._meta.db_table}")
        return cursor.fetchone()[0]


# =====================================================================================================
# The scale data generator (manage.py generate_scale_data)
# =====================================================================================================

PASSWORD = "scale-bench-2026"
TOTP_SECRET = "JBSWY3DPEHPK3PXP"
MARKER = "generate_scale_data"
MARKER_RE = re.compile(r"generate_scale_data seed=(-?\d+) dealers=(\d+) registrations=(\d+) today=(\S+) big=(\d+)")
BIG_DEALER_REGISTRATIONS = 5000
NIGHT = {"expire": 1 * 3600, "anonymise": 3 * 3600 + 45 * 60, "warnings": 6 * 3600 + 30 * 60, "stale": 6 * 3600 + 2700}
NOW_HOUR = 7  # "now" for the data: 07:00 local time on the anchor date, after the nightly jobs
INF = 1 << 62
N = "\\N"  # NULL in COPY text

SCALE_REGIONS = [  # name, code, country, share of the dealers, postcode areas (first two digits, inclusive)
    ("Nederland Randstad", "nl-randstad", "NL", 0.22, ((10, 39),)),
    ("Nederland Noord & Oost", "nl-noord-oost", "NL", 0.16, ((70, 99),)),
    ("Nederland Zuid", "nl-zuid", "NL", 0.12, ((40, 69),)),
    ("Vlaanderen", "be-vlaanderen", "BE", 0.17, ((15, 39), (80, 99))),
    ("Wallonie & Bruxelles", "be-wallonie", "BE", 0.08, ((10, 14), (40, 79))),
    ("Deutschland West", "de-west", "DE", 0.25, ((32, 59),)),
]
FIRST_NAMES = {
    "NL": """Sanne Marieke Jeroen Femke Lars Eva Daan Lotte Bram Iris Henk Sophie Jan Noor Mark Fleur Kees Julia
        Tim Ruud Anouk Thijs Emma Sem Lieke Joost Anne Bas Maaike Stijn Roos Koen Esther Wouter Inge Niels""".split(),
    "BE": """Wim Lien Bart Sofie Jef An Koen Els Pieter Thomas Claire Luc Marie Tom Nathalie Kris Griet Stefaan
        Karen Dirk Hilde Jonas Laura Arne Julie Wout Elke Lucas Charlotte Maarten""".split(),
    "DE": """Thomas Anna Michael Julia Andreas Katrin Stefan Sabine Markus Claudia Jan Lena Tobias Laura Christian
        Nicole Matthias Sandra Florian Petra Jens Miriam Sebastian Birgit Lukas Heike""".split(),
}
DEALER_WORDS = {
    "NL": """Installatietechniek Installaties Elektrotechniek Klimaattechniek Energietechniek Techniek
        Installatiegroep Zonnetechniek Warmtetechniek Installatieservice Duurzaam""".split(),
    "BE": """Installaties Elektro Technics Energie Klimaat Verwarming Techniek Solar Sanitair Renovatie""".split(),
    "DE": """Haustechnik Elektrotechnik Klimatechnik Energietechnik Gebäudetechnik Solartechnik Heizungsbau
        Wärmetechnik Elektro Installationen""".split(),
}
DEALER_FORMS = {
    "NL": ["B.V.", "B.V.", "BV", "", "V.O.F."],
    "BE": ["BV", "NV", "BVBA", "SRL", ""],
    "DE": ["GmbH", "GmbH", "GmbH & Co. KG", "e.K.", "KG"],
}
DEALER_STATUS_MIX = (("active", 0.86), ("onboarding", 0.04), ("improvement_plan", 0.04), ("phasing_out", 0.03))
# the rest (3 %) terminated
CATALOGUE = [
    # product line, code, protection days (None: the programme's default), direct only, SKU prefix, series,
    # (product, list price in EUR)
    ("Warmtepompen", "heat-pumps", 180, False, "HP", "AeroTherm",
     [("6 kW lucht/water", 5450), ("8 kW lucht/water", 6450), ("11 kW lucht/water", 8200), ("14 kW lucht/water", 9875),
      ("16 kW hybride", 7300), ("22 kW bodem/water", 17400), ("30 kW bodem/water", 23900)]),
    ("Klimaatbeheersing", "climate", None, False, "CL", "FlowAir",
     [("VRF buitenunit 10 kW", 7200), ("VRF buitenunit 20 kW", 12900), ("cassette-unit 2,5 kW", 1180),
      ("wandunit 3,5 kW", 940), ("kanaalunit 7 kW", 2650), ("gebouwregeling", 2350)]),
    ("Zonne-energie", "solar", None, False, "PV", "SunLine",
     [("410 Wp paneel", 189), ("440 Wp paneel", 215), ("omvormer 5 kW", 1290), ("omvormer 10 kW", 2140),
      ("omvormer 20 kW", 3480), ("montagesysteem plat dak", 95)]),
    ("Energieopslag", "storage", None, False, "ES", "VoltStore",
     [("thuisbatterij 5 kWh", 3900), ("thuisbatterij 10 kWh", 6800), ("bedrijfsbatterij 50 kWh", 29500),
      ("energiemanagementsysteem", 1450)]),
    ("Laadinfrastructuur", "ev-charging", None, False, "EV", "ChargeLine",
     [("wallbox 11 kW", 890), ("duo-laadpaal 22 kW", 2450), ("snellader 50 kW", 24800),
      ("laadplein-software (jaar)", 1200)]),
    ("Gebouwautomatisering", "building-automation", 120, False, "BA", "Cortex",
     [("regelkast", 3650), ("ruimteregelaar", 420), ("sensorpakket", 780), ("gebouwbeheersysteem", 14500),
      ("energiemonitoring", 2900)]),
    ("Service & onderhoud", "service", None, False, "SV", "CarePlan",
     [("onderhoudscontract basis (jaar)", 650), ("onderhoudscontract premium (jaar)", 1450),
      ("storingsdienst 24/7 (jaar)", 2400)]),
    ("Industriële besturing", "industrial", 180, True, "IC", "Cortex",
     [("PLC 9000", 12800), ("PLC 9000 redundant", 21400), ("SCADA-licentie", 18500)]),
]  # fmt: skip
COMPETITORS = """ThermaNord KlimaPlus SolarWerk Voltara Calora Enerlux Aerona Nordwind Heliox Brisa""".split()
NEXT_STEPS = [
    "Offerte bespreken met de klant.",
    "Technisch bezoek op locatie gepland.",
    "Wachten op de subsidieaanvraag.",
    "Demo bij de klant ingepland.",
    "Second opinion van de installateur van de klant.",
    "Budget wordt in de volgende vergadering goedgekeurd.",
    "Angebot nachfassen.",
    "Besichtigung vor Ort vereinbart.",
]
INFO_QUESTIONS = [
    "Please add the customer's VAT number.",
    "What is the expected start of the project?",
    "Which competitors are involved?",
    "Please confirm the quantities; they seem high for this customer.",
    "Who is the decision maker at the customer?",
    "Is this a new installation or a replacement?",
]
INFO_ANSWERS = ["", "Added the requested details.", "VAT number added.", "Quantities confirmed with the customer."]
REJECTIONS = [
    "The customer is already served by the vendor's direct team.",
    "Not enough information about the opportunity to protect it.",
    "The expected close date lies too far ahead to protect this opportunity now.",
    "This is a renewal of an existing contract, not a new opportunity.",
    "The products do not match the customer's project as described.",
    "A registration of this opportunity was already protected.",
]
REVIEW_NOTES = ["", "", "", "Checked with direct sales.", "Customer known to us; fine.", "Value plausible."]
ESCALATION_NOTES = [
    "Value above the enterprise threshold: the direct team should confirm.",
    "Customer lies in another dealer's exclusive territory.",
    "Possible named account; please decide.",
    "Dealer insists on protection; needs a decision above me.",
]
EXTENSION_REASONS = [
    "The customer postponed the decision to next quarter.",
    "Waiting for the customer's subsidy approval.",
    "The tender was extended by the customer.",
    "Board meeting of the customer moved.",
]
EXTENSION_DECLINES = [
    "No progress reported since the approval.",
    "The opportunity has had enough time; register it again when it becomes active.",
]
ESCALATE_REASON = "Your registration needs a further review. We will let you know the outcome."
WITHDRAW_REASON = "Withdrawn by the dealer."
UPDATE_REASON = "Details updated by the dealer."
EXPIRE_REASON = "The protection window ended."
AWARD_REASON = "Approved after review."
# deals.conflicts.NEUTRAL_REVIEW and NEUTRAL_REJECTION (checked by tests/test_generate_scale_data.py)
NEUTRAL_REVIEW = "Your registration needs a further review because of a possible overlap. We will let you know."
NEUTRAL_REJECTION = (
    "After review, this opportunity cannot be protected for you under the programme's rules. "
    "Your partner manager can explain what this means for you."
)
STAGES = ("early", "mid", "late")
_NEXT_STAGE = {"": "early", "early": "mid", "mid": "late", "late": "late"}
OPEN = frozenset(("submitted", "info_requested", "approved", "escalated"))


@dataclass(frozen=True)
class Params:
    dealers: int
    registrations: int
    seed: int
    today: date
    big: int  # registrations of the one big dealer (dealer 1)

    def marker(self) -> str:
        return (
            f"{MARKER} seed={self.seed} dealers={self.dealers} registrations={self.registrations} "
            f"today={self.today.isoformat()} big={self.big}"
        )


def default_big(registrations: int) -> int:
    """The big dealer's registrations: 5,000, or a fifth of a smaller data set."""
    return min(BIG_DEALER_REGISTRATIONS, max(1, registrations // 5))


def parse_marker(text: str | None) -> dict | None:
    m = MARKER_RE.search(text or "")
    if not m:
        return None
    return {
        "seed": int(m[1]),
        "dealers": int(m[2]),
        "registrations": int(m[3]),
        "today": date.fromisoformat(m[4]),
        "big": int(m[5]),
    }


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.replace("ß", "ss")).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", folded.lower())


def _esc(text: str) -> str:
    """Text for COPY: backslashes, tabs and line breaks escaped (generated text rarely has them)."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _cents(c: int) -> str:
    return f"{c // 100}.{c % 100:02d}"


def _add_months(d: date, months: int) -> date:
    year, month = divmod(d.year * 12 + d.month - 1 + months, 12)
    return date(year, month + 1, min(d.day, calendar.monthrange(year, month + 1)[1]))


# --- the clock: local days, working hours, timestamps as text ---------------------------------------


class Clock:
    """Times are integer seconds since the epoch (UTC). Days are indexes into a table of local
    midnights from six years before the anchor to ~2 years after it; the working-hour arithmetic is
    deals.sla's (whole working days, Monday to Friday minus the holidays), on that table."""

    def __init__(self, anchor: date, tz: ZoneInfo, holidays: set[date], *, years_back: int = 6, days_ahead: int = 800):
        self.base = anchor - timedelta(days=366 * years_back)
        n = (anchor - self.base).days + days_ahead
        days = [self.base + timedelta(days=i) for i in range(n + 1)]
        self.mid = [int(datetime.combine(d, dtime.min, tzinfo=tz).timestamp()) for d in days]
        self.work = [d.weekday() < 5 and d not in holidays for d in days]
        self.weekday = [d.weekday() for d in days]
        self.dates = [d.isoformat() for d in days]
        self.years = [d.year for d in days]
        self.anchor = (anchor - self.base).days
        self.now = self.mid[self.anchor] + NOW_HOUR * 3600
        self._utc_base = self.mid[0] // 86400 - 2
        self._utc = [(date(1970, 1, 1) + timedelta(days=self._utc_base + i)).isoformat() + " " for i in range(n + 6)]
        self._hms = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00" for s in range(86400)]

    def day(self, t: int) -> int:
        return bisect.bisect_right(self.mid, t) - 1

    def date(self, i: int) -> date:
        return self.base + timedelta(days=i)

    def ts(self, t: int) -> str:
        """A moment as COPY text (UTC)."""
        d, r = divmod(t, 86400)
        return self._utc[d - self._utc_base] + self._hms[r]

    def next_work(self, i: int) -> int:
        while not self.work[i]:
            i += 1
        return i

    def add_wh(self, start: int, hours: float) -> int:
        """deals.sla.add_working_hours, in whole seconds."""
        remaining = int(round(hours * 3600))
        mid, work = self.mid, self.work
        i = bisect.bisect_right(mid, start) - 1
        moment = start
        while True:
            if work[i]:
                begin = moment if moment > mid[i] else mid[i]
                available = mid[i + 1] - begin
                if remaining <= available:
                    return begin + remaining
                remaining -= available
            i += 1

    def wh_between(self, start: int, end: int) -> str:
        """deals.sla.working_hours_between, as its text (two decimals, half even)."""
        if end <= start:
            return "0.00"
        mid, work = self.mid, self.work
        i, last = self.day(start), self.day(end)
        total = 0
        while i <= last:
            if work[i]:
                begin = start if start > mid[i] else mid[i]
                finish = end if end < mid[i + 1] else mid[i + 1]
                if finish > begin:
                    total += finish - begin
            i += 1
        q, r = divmod(total, 36)  # hundredths of an hour
        if 2 * r > 36 or (2 * r == 36 and q % 2):
            q += 1
        return f"{q // 100}.{q % 100:02d}"


# --- where rows go -----------------------------------------------------------------------------------


class _Table:
    """Rows for one table: tuples of COPY text in `columns` order; the other columns get constant
    defaults (NULL, "", a non-callable default) or the model refuses to be loaded."""

    def __init__(self, sink, model, columns: list[str]):
        self.sink, self.model, self.columns = sink, model, list(columns)
        fields = {f.attname: f for f in model._meta.concrete_fields}
        unknown = [c for c in self.columns if c not in fields]
        if unknown:
            raise ValueError(f"{model.__name__} has no {unknown}")
        self.missing, tail = [], []
        for name, f in fields.items():
            if name in self.columns:
                continue
            if f.null:
                tail.append(N)
            elif f.has_default() and not callable(f.default):
                tail.append(_copy_value(f.default))
            elif f.blank and f.get_internal_type() in ("CharField", "TextField", "EmailField", "URLField", "SlugField"):
                tail.append("")
            else:
                raise ValueError(f"{model.__name__}.{name}: no constant default; give it a value")
            self.missing.append(name)
        self.tail = ("\t" + "\t".join(tail)) if tail else ""
        self.empty = {c: (N if fields[c].null else "") for c in self.columns}
        self.rows: list = []
        self.count = 0
        self.batch = sink.batch_rows

    def add(self, row: tuple) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.batch:
            self.flush()

    def add_dict(self, row: dict) -> None:
        """A row as a dict of attname -> Python value; a missing nullable or blank-text column is NULL or ""."""
        self.add(tuple(_copy_value(row[c]) if c in row else self.empty[c] for c in self.columns))

    def flush(self) -> None:
        if self.rows:
            self.count += len(self.rows)
            rows, self.rows = self.rows, []
            self.sink.write(self, rows)


class Sink:
    """COPY in batches on PostgreSQL, from a background thread (the generator goes on while the
    database takes the previous batch); INSERTs through the model fields elsewhere (small sizes only)."""

    def __init__(self, connection, batch_rows: int = 20_000, *, freeze: bool = False):
        self.connection = connection
        self.freeze = freeze  # COPY FREEZE: the tables were emptied in this transaction
        self.pg = connection.vendor == "postgresql"
        self.batch_rows = batch_rows if self.pg else 2000
        self.tables: dict[str, _Table] = {}
        self.error: BaseException | None = None
        self.copy_seconds = 0.0
        if self.pg:
            connection.ensure_connection()
            self.raw = connection.connection
            self.queue: queue.Queue = queue.Queue(maxsize=3)
            self.thread = threading.Thread(target=self._copier, name="scale-data-copy", daemon=True)
            self.thread.start()

    def table(self, model, columns: list[str]) -> _Table:
        key = model._meta.label
        if key not in self.tables:
            self.tables[key] = _Table(self, model, columns)
        return self.tables[key]

    def write(self, table: _Table, rows: list) -> None:
        if self.error:
            raise RuntimeError("COPY failed") from self.error
        if self.pg:
            tail = table.tail
            data = "\n".join(["\t".join(r) + tail for r in rows]) + "\n"
            columns = ", ".join(
                self.connection.ops.quote_name(table.model._meta.get_field(c).column)
                for c in table.columns + table.missing
            )
            sql = f"COPY {self.connection.ops.quote_name(table.model._meta.db_table)} ({columns}) FROM STDIN"
            if self.freeze:
                sql += " WITH (FREEZE)"
            self.queue.put((sql, data.encode()))
        else:
            self._insert(table, rows)

    def _copier(self) -> None:
        with self.raw.cursor() as cursor:
            while True:
                item = self.queue.get()
                if item is None:
                    return
                if self.error:
                    continue
                t0 = time.perf_counter()
                try:
                    cursor.copy_expert(item[0], io.BytesIO(item[1]), size=1 << 20)
                except BaseException as exc:  # reported by the generating thread
                    self.error = exc
                self.copy_seconds += time.perf_counter() - t0

    def _insert(self, table: _Table, rows: list) -> None:
        """INSERT through the model's fields (their database preparation, not their pre_save: an
        auto_now_add field keeps the generated value)."""
        model, connection = table.model, self.connection
        fields = [model._meta.get_field(c) for c in table.columns]
        decoders = []
        for f in fields:
            kind = f.get_internal_type()
            if kind in ("BooleanField", "NullBooleanField"):
                decoders.append(lambda v: v == "t")
            elif kind == "JSONField":
                decoders.append(lambda v: json.loads(_unescape(v)))
            else:
                decoders.append(_unescape)
        params = []
        for row in rows:
            obj = model(
                **{f.attname: (None if v == N else dec(v)) for f, dec, v in zip(fields, decoders, row, strict=True)}
            )
            params.append([f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields])
        missing = [model._meta.get_field(c) for c in table.missing]
        defaults = [f.get_db_prep_save(f.get_default(), connection) for f in missing]
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields + missing)
        marks = ", ".join(["%s"] * (len(fields) + len(missing)))
        sql = f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns}) VALUES ({marks})"
        with connection.cursor() as cursor:
            cursor.executemany(sql, [p + defaults for p in params])

    def flush(self) -> None:
        for table in self.tables.values():
            table.flush()

    def close(self) -> None:
        """Flush everything and wait for the last COPY."""
        try:
            self.flush()
        finally:
            if self.pg:
                self.queue.put(None)
                self.thread.join()
        if self.error:
            raise RuntimeError(f"COPY failed: {self.error}") from self.error

    def counts(self) -> dict[str, int]:
        return {t.model._meta.db_table: t.count for t in self.tables.values()}


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r"}.get(m[1], m[1]), text)


# --- the plan: who and what exists ---------------------------------------------------------------------


class _Dealer:
    __slots__ = (
        "idx", "id", "num", "name", "country", "region", "pm", "rd", "reviewer", "users", "admin", "status",
        "joined", "start", "end", "n", "tier", "margin", "cap", "speed", "win", "customers", "shared",
        "territories", "own_prefixes", "country_wide", "fav_lines", "distributors", "repeat", "quality", "size",
    )  # fmt: skip

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


class _Life:
    """What happened to one registration, up to "now" (the attributes not set are None)."""

    events = outcome = changed = start = remind = due = reminded = overdue = decided_at = decided_by = None
    wh = in_time = P = margin = ext = warn = last = stale = won_cents = won_day = lost_reason = None
    lost_comp = close = requests = cdec = stage = flag_time = None


def _table_models():
    """Every table this generator fills (and --flush empties), children before parents."""
    from allauth.account.models import EmailAddress
    from allauth.mfa.models import Authenticator

    from dealers import models as d
    from deals import models as r
    from prm.models import OutboxEmail
    from tiers import models as t

    return [
        OutboxEmail, t.TierChange, t.Evaluation, t.EvaluationRun, t.DealerStanding, t.SatisfactionScore,
        t.CertificationHolding, t.Certification, t.Sale, r.ErasureLog, r.ProtectionLookup, r.RegistrationFlag,
        r.NotSameCustomer, r.Conflict, r.ExtensionRequest, r.RegistrationEvent, r.RegistrationLine, r.Registration,
        r.ReferenceCounter, r.NamedAccount, r.OpenCustomer, r.Customer, r.Product, r.ProductLine, r.Holiday,
        d.LoginRecord, d.ImprovementPlan, d.OrganisationEvent, d.Invitation, d.Membership, d.Territory,
        d.Organisation.specialisations.through, d.Organisation.distributors.through, d.Organisation,
        d.Specialisation, Authenticator, EmailAddress, d.User.groups.through, d.User.user_permissions.through,
        d.Region, d.User,
    ]  # fmt: skip


def non_empty_tables() -> list[str]:
    return [m._meta.db_table for m in _table_models() if m.objects.exists()]


def flush_tables(connection) -> None:
    """Empty every table the generator fills (and the sessions and admin log of the people in them)."""
    tables = [m._meta.db_table for m in _table_models()]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            names = ", ".join(connection.ops.quote_name(t) for t in tables + ["django_session"])
            # checks still deferred in this transaction would stop the TRUNCATE: run them now
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        else:
            for table in ["django_admin_log", "django_session", *tables]:
                cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")
            cursor.execute("DELETE FROM sqlite_sequence")


def read_marker(connection) -> dict | None:
    from deals.models import Registration

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT obj_description(%s::regclass, 'pg_class')", [Registration._meta.db_table])
        return parse_marker(cursor.fetchone()[0])


def _admin_connection():
    """An autocommit connection to the server's "postgres" database, and DATABASE_URL parsed."""
    import dj_database_url
    import psycopg2

    config = dj_database_url.parse(os.environ["DATABASE_URL"])
    admin = psycopg2.connect(
        dbname="postgres",
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        host=config.get("HOST") or None,
        port=config.get("PORT") or None,
    )
    admin.autocommit = True
    return admin, config


def ensure_database() -> str:
    """The PostgreSQL database DATABASE_URL names, created if it does not exist (for the measuring
    tools and `make bench`, before Django is set up); exits with a message on any other database."""
    import dj_database_url

    config = dj_database_url.parse(os.environ.get("DATABASE_URL", "")) if os.environ.get("DATABASE_URL") else {}
    if "postgresql" not in str(config.get("ENGINE", "")):
        sys.exit("This needs PostgreSQL: set DATABASE_URL=postgres://user@host:5432/<database>")
    name = config["NAME"]
    admin, _config = _admin_connection()
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")
    admin.close()
    return name


@contextmanager
def scratch_copy(suffix: str = "_scratch"):
    """A copy of the DATABASE_URL database (CREATE DATABASE … TEMPLATE, a file copy) for a run that
    writes for real, such as the load test's submits and approvals; dropped afterwards. Yields
    its URL. Nobody may be connected to the original while it is copied."""
    admin, config = _admin_connection()
    name = f"{config['NAME']}{suffix}"
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE "{config["NAME"]}"')
        base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# --- bulk-load tuning on PostgreSQL: secondary indexes and foreign keys off during the load --------------


def _suspend_constraints(cursor, tables: list[str]) -> list[str]:
    """Drop the secondary indexes and foreign keys of `tables` (inside the load's transaction) and
    return the statements that restore them exactly: one index build and one validating pass per
    constraint after the load is much cheaper than maintaining them row by row."""
    cursor.execute(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname AND c.contype IN ('p', 'u', 'x'))
        ORDER BY i.tablename, i.indexname
        """,
        [tables],
    )
    indexes = cursor.fetchall()
    cursor.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c
        WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY(%s) ORDER BY 1, 2
        """,
        [tables],
    )
    foreign = cursor.fetchall()
    restore = [definition for _name, definition in indexes]
    restore += [f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for table, name, definition in foreign]
    for table, name, _definition in foreign:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    return restore


# --- the generator ---------------------------------------------------------------------------------------


class ScaleGenerator:
    """plan() decides who and what exists (in memory, small); run() writes it all in one transaction:
    the small tables, then the registrations in submission order (streamed in batches), then the
    tier programme's other inputs; then the counters, sequences, indexes and constraints."""

    def __init__(self, params: Params, *, out=print, batch_rows: int = 20_000):
        from django.conf import settings

        from deals.models import ProgrammeSettings
        from tiers.models import Tier

        self.p = params
        self.out = out
        self.batch_rows = batch_rows
        self.tz = ZoneInfo(settings.TIME_ZONE)
        self.programme = ProgrammeSettings.load()
        self.tiers = list(Tier.objects.order_by("rank"))
        if not self.tiers:
            raise ValueError("No tiers: migrate first (tiers/0002 creates Gold, Silver and Bronze).")
        holidays = set()
        for year in range(params.today.year - 7, params.today.year + 3):
            holidays |= {date(year, 1, 1), date(year, 12, 25), date(year, 12, 26)}
        self.holidays = sorted(holidays)
        self.clock = Clock(params.today, self.tz, holidays)
        self.now = self.clock.now
        pg = self.programme
        self.sla_hours, self.reminder_hours = pg.review_sla_hours, pg.reminder_hours
        self.protection_days, self.extension_days = pg.default_protection_days, pg.extension_days
        self.max_extensions = pg.max_extensions
        self.warn_first, self.warn_second = pg.first_expiry_warning_days, pg.second_expiry_warning_days
        self.stale_seconds = pg.stale_after_days * 86400
        self.threshold_cents = int(pg.enterprise_value_threshold * 100)
        self.threshold_text = f"{pg.enterprise_value_threshold:,}"
        self.retention = pg.contact_retention_months
        self.timings: dict[str, float] = {}
        self.ascii_names: dict[str, str] = {}
        self.restore_times: list[tuple[float, str]] = []
        from deals import matching
        from deals.conflicts import customer_keys

        self.match, self.customer_keys, self.normalize_vat = matching.match, customer_keys, matching.normalize_vat

    # --- entry point ---------------------------------------------------------------------------------

    def run(self) -> dict:
        from django.db import connection, transaction

        started = time.perf_counter()
        self.plan()
        self.timings["plan"] = time.perf_counter() - started
        with transaction.atomic():
            restore = []
            pg = connection.vendor == "postgresql"
            if pg:
                # Emptied (they are empty already) in this transaction, so that COPY may FREEZE: the rows
                # are written frozen and all-visible, and the VACUUM after the load has nothing to rewrite.
                flush_tables(connection)
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
                    cursor.execute("SET LOCAL synchronous_commit = off")
                    restore = _suspend_constraints(cursor, self._big_tables())
            self.sink = Sink(connection, self.batch_rows, freeze=pg)
            try:
                t0 = time.perf_counter()
                self.write_base()
                self.write_registrations()
                t1 = time.perf_counter()
                self.write_tier_activity()
                self.timings["tiers"] = time.perf_counter() - t1
            finally:
                t2 = time.perf_counter()
                self.sink.close()
                self.timings["copy wait"] = time.perf_counter() - t2
            self.timings["generate + COPY"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            with connection.cursor() as cursor:  # Registration.customer_name_key: the customer's key, copied
                cursor.execute(
                    "UPDATE deals_registration SET customer_name_key = "
                    "(SELECT c.name_key FROM deals_customer c WHERE c.id = deals_registration.customer_id)"
                )
            self.timings["name keys on registrations"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            from deals.open_customers import open_customers_rebuild

            open_customers_rebuild()  # the customers with an open registration (deals.models.OpenCustomer)
            self.timings["open customers"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            self.finish(connection)
            with connection.cursor() as cursor:
                for statement in restore:
                    s0 = time.perf_counter()
                    cursor.execute(statement)
                    self.restore_times.append((time.perf_counter() - s0, statement))
                if connection.vendor == "postgresql":
                    cursor.execute(
                        f"COMMENT ON TABLE {connection.ops.quote_name('deals_registration')} IS %s", [self.p.marker()]
                    )
            self.timings["indexes + constraints"] = time.perf_counter() - t0
        # the dashboards' roll-up, as the nightly job would have left it (tiers.rollup)
        from tiers import models as tier_models
        from tiers.rollup import rollup_build, rollup_warm

        t0 = time.perf_counter()
        rollup_build()
        rollup_warm()
        self.timings["dashboards roll-up"] = time.perf_counter() - t0
        rolled = [
            m._meta.db_table
            for m in (
                tier_models.DealerMonth,
                tier_models.RegionMonth,
                tier_models.SaleMonth,
                tier_models.RegionSaleMonth,
            )
        ] + ["deals_opencustomer"]
        t0 = time.perf_counter()
        if connection.vendor == "postgresql" and not connection.in_atomic_block:  # VACUUM needs its own
            with connection.cursor() as cursor:
                for table in [*self.sink.counts(), *rolled]:
                    cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(table)}")
        self.timings["vacuum analyze"] = time.perf_counter() - t0
        self.timings["total"] = time.perf_counter() - started
        return {
            "counts": self.sink.counts(),
            "timings": self.timings,
            "copy_seconds": self.sink.copy_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "big_dealer": self.big_dealer_summary(),
            "slowest_restores": sorted(self.restore_times, reverse=True)[:8],
        }

    def _big_tables(self) -> list[str]:
        from deals import models as r
        from tiers import models as t

        return [
            m._meta.db_table
            for m in (
                r.Customer, r.Registration, r.RegistrationLine, r.RegistrationEvent, r.RegistrationFlag, r.Conflict,
                r.ExtensionRequest, r.NotSameCustomer, t.Sale, t.SatisfactionScore, t.CertificationHolding,
            )
        ]  # fmt: skip

    def big_dealer_summary(self) -> dict:
        d = self.dealers[0]
        return {"id": d.id, "name": d.name, "registrations": d.n, "admin": f"dealer{d.num}.1@scale.example"}

    # --- the plan ----------------------------------------------------------------------------------------

    def plan(self) -> None:
        p, c = self.p, self.clock
        rng = random.Random(f"{p.seed}:plan")
        self.regions = []
        for i, (name, code, country, share, areas) in enumerate(SCALE_REGIONS):
            self.regions.append({"id": i + 1, "name": name, "code": code, "country": country, "share": share,
                                 "areas": areas, "rd": None, "pms": []})  # fmt: skip
        n_pm = max(1, round(p.dealers / 200))
        # staff user ids: admin 1, regional directors, partner managers, direct sales
        self.admin_id = 1
        uid = 2
        for region in self.regions:
            region["rd"] = uid
            uid += 1
        shares = self._apportion([r["share"] for r in self.regions], n_pm, at_least_one=n_pm >= len(self.regions))
        self.pm_region = {}
        for region, k in zip(self.regions, shares, strict=True):
            for _ in range(k):
                region["pms"].append(uid)
                self.pm_region[uid] = region["id"]
                uid += 1
        self.n_pm = n_pm
        self.direct_ids = [uid, uid + 1]
        uid += 2
        self.first_dealer_user = uid

        # catalogue
        self.lines, self.products = [], []
        for li, (name, code, days, direct, prefix, series, items) in enumerate(CATALOGUE):
            self.lines.append({"id": li + 1, "name": name, "code": code, "days": days, "direct": direct})
            for k, (label, price) in enumerate(items):
                self.products.append(
                    (len(self.products) + 1, li + 1, f"{prefix}-{k + 1:03d}", f"{series} {label}", price * 100)
                )
        self.products_by_line = {line["id"]: [pr for pr in self.products if pr[1] == line["id"]] for line in self.lines}
        self.regular_lines = [line["id"] for line in self.lines if not line["direct"]]
        self.direct_lines = [line["id"] for line in self.lines if line["direct"]]

        # dealers
        anchor = c.anchor
        five_years = 5 * 365
        names_seen: set[tuple[str, str]] = set()
        self.dealers: list[_Dealer] = []
        region_weights = [(r, r["share"]) for r in self.regions]
        pm_cycle = {r["id"]: 0 for r in self.regions}
        for region in self.regions:
            rng.shuffle(region["pms"])
        for i in range(p.dealers):
            big = i == 0
            region = self.regions[1] if big else _weighted(rng, region_weights, self.regions[-1])
            country = region["country"]
            status = "active" if big else _weighted(rng, DEALER_STATUS_MIX, "terminated")
            if big:
                joined = anchor - 8 * 365
            elif status == "onboarding":
                joined = anchor - rng.randint(20, 120)
            else:
                joined = anchor - int(rng.triangular(180, 12 * 365, 9 * 365))
            end = anchor - 1
            if status == "terminated":
                end = anchor - rng.randint(60, 4 * 365)
                joined = min(joined, end - rng.randint(365, 3 * 365))
            start = max(joined, anchor - five_years)
            if region["pms"] and (big or rng.random() >= 0.03):
                pms = region["pms"]
                pm = pms[pm_cycle[region["id"]] % len(pms)]
                pm_cycle[region["id"]] += 1
            else:
                pm = None  # the regional director looks after it
            name = self._dealer_name(rng, country, names_seen)
            n_users = 3 if big else 1 + _weighted(rng, ((0, 0.3), (1, 0.4)), 2)
            d = _Dealer(
                idx=i, id=i + 1, num=i + 1, name=name, country=country, region=region, pm=pm, rd=region["rd"],
                reviewer=pm or region["rd"], status=status, joined=joined, start=start, end=end, n=0,
                customers=[], shared={}, territories=[], own_prefixes=set(), country_wide=False,
                fav_lines=rng.sample(self.regular_lines, rng.choice((1, 2, 2, 3))), distributors=[],
                repeat=rng.uniform(0.5, 0.7), quality=rng.uniform(3.0, 4.9), win=rng.uniform(0.3, 0.7),
            )  # fmt: skip
            d.users = list(range(uid, uid + n_users))
            d.admin = uid
            uid += n_users
            self.dealers.append(d)
        self.n_dealer_users = uid - self.first_dealer_user
        # distributors: two per country (one for a tiny data set), after the dealers
        self.distributors = []
        per_country = 2 if p.dealers >= 50 else 1
        for country in ("NL", "BE", "DE"):
            for k in range(per_country):
                region = next(r for r in self.regions if r["country"] == country)
                did = p.dealers + len(self.distributors) + 1
                name = self._dealer_name(rng, country, names_seen, distributor=True)
                pm = region["pms"][k % len(region["pms"])] if region["pms"] else None
                self.distributors.append({"id": did, "num": len(self.distributors) + 1, "name": name,
                                          "country": country, "region": region, "users": [uid, uid + 1],
                                          "pm": pm})  # fmt: skip
                uid += 2
        self.n_users = uid - 1
        by_country: dict[str, list[int]] = {}
        for dist in self.distributors:
            by_country.setdefault(dist["country"], []).append(dist["id"])
        for d in self.dealers:
            if rng.random() < 0.4:
                options = by_country[d.country]
                d.distributors = rng.sample(options, 2 if rng.random() < 0.1 and len(options) > 1 else 1)

        self._plan_counts(rng)
        self._plan_tiers(rng)
        self._plan_territories(rng)
        self._plan_pool(rng)

    @staticmethod
    def _apportion(weights: list[float], total: int, *, at_least_one: bool = False) -> list[int]:
        """Whole numbers in proportion to weights that add up to total (largest remainder)."""
        s = sum(weights)
        exact = [w / s * total for w in weights] if s else [0.0] * len(weights)
        out = [int(x) for x in exact]
        if at_least_one:
            out = [max(1, o) for o in out]
        order = sorted(range(len(weights)), key=lambda k: exact[k] - int(exact[k]), reverse=True)
        k = 0
        while sum(out) < total:
            out[order[k % len(order)]] += 1
            k += 1
        while sum(out) > total:
            j = max(range(len(out)), key=lambda k: out[k])
            out[j] -= 1
        return out

    def _dealer_name(self, rng, country: str, seen: set, *, distributor: bool = False) -> str:
        for attempt in range(50):
            family, word = _pick(rng, FAMILIES[country]), _pick(rng, DEALER_WORDS[country])
            if distributor:
                core = (
                    f"{_pick(rng, BRAND_HEADS)}{_pick(rng, BRAND_TAILS)} Distributie"
                    if country != "DE"
                    else (f"{_pick(rng, BRAND_HEADS)}{_pick(rng, BRAND_TAILS)} Großhandel")
                )
            else:
                u = rng.random()
                if u < 0.35:
                    core = f"{family} {word}"
                elif u < 0.6:
                    core = f"{_pick(rng, BRAND_HEADS)}{_pick(rng, BRAND_TAILS)} {word}"
                elif u < 0.75:
                    core = f"{word} {_pick(rng, PLACES[country])}"
                elif u < 0.88:
                    core = f"{family} & {_pick(rng, FAMILIES[country])}"
                else:
                    core = f"{_pick(rng, INITIALS)}. {family} {word}"
            if attempt >= 3:
                core += f" {_pick(rng, PLACES[country])}"
            if attempt >= 10:
                core += f" {attempt}"
            name = f"{core} {_pick(rng, DEALER_FORMS[country])}".strip()
            key = (name.lower(), country)
            if key not in seen:
                seen.add(key)
                return name
        raise RuntimeError("could not find a unique dealer name")

    def _plan_counts(self, rng) -> None:
        """Registrations per dealer: the big dealer exactly p.big; the others a long tail (lognormal,
        scaled by how long they were active), each below 70 % of the big dealer's."""
        p, dealers = self.p, self.dealers
        if p.big > p.registrations:
            raise ValueError("The big dealer cannot have more registrations than there are.")
        dealers[0].n = p.big if len(dealers) > 1 else p.registrations
        rest_total = p.registrations - dealers[0].n
        others = dealers[1:]
        if not others:
            return
        cap = max(1, int(0.7 * p.big))
        if cap * len(others) < rest_total:
            raise ValueError(
                f"{rest_total} registrations over {len(others)} dealers would give some dealer more than the big one."
            )
        weights = [rng.lognormvariate(0, 1.25) * max(30, d.end - d.start) / (5 * 365) for d in others]
        counts = [0.0] * len(others)
        free = list(range(len(others)))
        remaining = float(rest_total)
        while free and remaining > 0.5:
            s = sum(weights[k] for k in free)
            capped = []
            for k in free:
                counts[k] += weights[k] / s * remaining
                if counts[k] > cap:
                    capped.append(k)
            over = sum(counts[k] - cap for k in capped)
            for k in capped:
                counts[k] = cap
            capped_set = set(capped)
            free = [k for k in free if k not in capped_set]
            remaining = over
        ints = self._apportion(counts, rest_total)
        for d, n in zip(others, ints, strict=True):
            d.n = min(n, cap)
        short = rest_total - sum(d.n for d in others)
        k = 0
        while short > 0:  # the cap cut some rounding: give it to the smallest
            d = others[k % len(others)]
            if d.n < cap:
                d.n += 1
                short -= 1
            k += 1

    def _plan_tiers(self, rng) -> None:
        """Tiers by size (top 10 % the highest, next 25 % the second, the rest the lowest); the cap on
        open registrations then bounds how long a dealer's protections stay open."""
        evaluated = [d for d in self.dealers if d.status != "terminated"]
        ranked = sorted(evaluated, key=lambda d: (-d.n, d.idx))
        n = len(ranked)
        bounds, acc = [], 0.0
        for share in [0.10, 0.25][: len(self.tiers) - 1]:
            acc += share
            bounds.append(round(n * acc))
        for pos, d in enumerate(ranked):
            level = sum(1 for b in bounds if pos >= b)
            # an onboarding dealer has no standing yet: the lowest tier's benefits apply until its first evaluation
            d.tier = self.tiers[min(level, len(self.tiers) - 1)] if d.status != "onboarding" else None
        lowest = self.tiers[-1]
        k = math.log(1.25) / 365  # 25 % more registrations every year
        for d in self.dealers:
            tier = d.tier or lowest
            d.margin = f"{tier.registered_margin_percent:.2f}"
            d.cap = tier.open_registration_cap
            length = max(1, d.end - d.start + 1)
            rate = d.n * k * math.exp(k * length) / math.expm1(k * length) if d.n else 0.0  # per day, at the end
            # the mean days from approval to an outcome, so that open registrations stay near 45 % of the cap
            target = (0.45 * d.cap / rate - 3) / 0.8 if rate else 60
            d.speed = max(4.0, min(rng.uniform(40, 60), target))
            d.size = d.n / max(1, self.p.registrations / max(1, self.p.dealers))

    def _plan_territories(self, rng) -> None:
        """A third of the dealers has territories: a whole country, or a range of postcodes; some
        ranges are exclusive (never overlapping another exclusive one)."""
        self.exclusive: dict[tuple[str, str], tuple[int, str]] = {}  # (country, 3-digit prefix) -> (dealer, text)
        self.territory_rows = []
        country_names = {"NL": "Netherlands", "BE": "Belgium", "DE": "Germany"}
        from dealers.countries import COUNTRIES

        # exclusive territories are rare: at most 1 in 25 postcode blocks of a region is someone's
        room = {r["id"]: max(1, sum(hi - lo + 1 for lo, hi in r["areas"]) * 10 // 25) for r in self.regions}
        for d in self.dealers:
            if d.idx and rng.random() >= 0.33 and d.idx != 1:
                continue
            for _ in range(1 if rng.random() < 0.8 else 2):
                u = 0.0 if d.idx == 1 else rng.random()  # dealer 2 always has an exclusive territory
                areas = d.region["areas"]
                two = rng.randint(*_pick(rng, areas))
                cname = COUNTRIES.get(d.country, country_names[d.country])
                if u < 0.12 and room[d.region["id"]] > 0:  # exclusive: a block of 10 postcodes (100 in Germany)
                    room[d.region["id"]] -= 1
                    for _attempt in range(20):
                        three = f"{two:02d}{rng.randint(0, 9)}"
                        if (d.country, three) not in self.exclusive:
                            break
                        two = rng.randint(*_pick(rng, areas))
                    else:
                        continue
                    low, high = (f"{three}0", f"{three}9") if d.country != "DE" else (f"{three}00", f"{three}99")
                    text = f"{cname} {low}–{high} (exclusive)"
                    self.exclusive[(d.country, three)] = (d.idx, text)
                    d.own_prefixes.add(three)
                    self.territory_rows.append((d.id, d.country, low, high, True))
                elif u < 0.45:
                    d.country_wide = True
                    self.territory_rows.append((d.id, d.country, "", "", False))
                else:
                    low, high = (
                        (f"{two:02d}00", f"{two:02d}99") if d.country != "DE" else (f"{two:02d}000", f"{two:02d}999")
                    )
                    d.own_prefixes.add(f"{two:02d}")
                    self.territory_rows.append((d.id, d.country, low, high, False))
                d.territories = True

    def _plan_pool(self, rng) -> None:
        """Real customers known to several dealers (each dealer types its own variant of them), per
        region, with a long tail of popularity; the most popular are also named accounts."""
        self.pool: dict[int, list[tuple]] = {}
        self.pool_cum: dict[int, list[float]] = {}
        size = max(10, self.p.registrations // 50)
        pool_id = 0
        for region in self.regions:
            n = max(5, round(size * region["share"]))
            items, cum, acc = [], [], 0.0
            for k in range(n):
                country = region["country"]
                name = business_name(rng, country)
                city = _pick(rng, PLACES[country])
                vat, company = vat_number(rng, country) if rng.random() < 0.45 else ("", "")
                site = website(rng, name, country, city) if rng.random() < 0.35 else ""
                items.append((pool_id, name, city, self._postcode_in_area(rng, region), country, site, vat, company))
                pool_id += 1
                acc += 1.0 / (k + 1) ** 0.9
                cum.append(acc)
            self.pool[region["id"]], self.pool_cum[region["id"]] = items, cum
        self.pool_count = pool_id
        # named accounts: the most popular real customers of each region
        self.named: dict[int, dict] = {}
        n_named = max(3, min(25, self.p.dealers // 400))
        per_region = self._apportion([r["share"] for r in self.regions], n_named)
        aid = 1
        for region, k in zip(self.regions, per_region, strict=True):
            for item in self.pool[region["id"]][:k]:
                candidates = [d for d in self.dealers if d.region is region and d.status != "terminated" and d.idx]
                holder = _pick(rng, candidates) if candidates and rng.random() < 0.2 else None
                pid, name, city, _pc, country, site, vat, company = item
                self.named[pid] = {
                    "id": aid, "name": name, "city": city, "country": country, "website": site, "vat": vat,
                    "company_number": company, "holder": holder,
                }  # fmt: skip
                aid += 1

    def _postcode_in_area(self, rng, region, two: int | None = None, three: str | None = None) -> str:
        country = region["country"]
        if three is None:
            if two is None:
                two = rng.randint(*_pick(rng, region["areas"]))
            three = f"{two:02d}{rng.randint(0, 9)}"
        if country == "NL":
            letters = "ABCDEFGHJKLMNPRSTVWXZ"
            return f"{three}{rng.randint(0, 9)} {_pick(rng, letters)}{_pick(rng, letters)}"
        if country == "BE":
            return f"{three}{rng.randint(0, 9)}"
        return f"{three}{rng.randint(0, 99):02d}"

    # --- small tables ----------------------------------------------------------------------------------

    def write_base(self) -> None:
        from allauth.account.models import EmailAddress
        from allauth.mfa.models import Authenticator
        from django.contrib.auth.hashers import make_password
        from django.contrib.auth.models import Group

        from dealers.models import Membership, Organisation, Region, StaffRole, Territory, User
        from deals.models import Holiday, NamedAccount, Product, ProductLine
        from tiers.models import Certification, DealerStanding, TierChange

        c, sink, p = self.clock, self.sink, self.p
        rng = random.Random(f"{p.seed}:base")
        ts = c.ts
        groups = dict(Group.objects.filter(name__in=StaffRole.values).values_list("name", "pk"))
        # hashed once, the same hash for every person; the salt comes from the seed, so that the same
        # arguments give the same rows
        password = make_password(PASSWORD, salt=f"scalebench{p.seed}".replace("-", "m"))
        users = sink.table(User, ["id", "password", "is_superuser", "first_name", "last_name", "is_staff",
                                  "is_active", "date_joined", "email", "home_region_id"])  # fmt: skip
        emails = sink.table(EmailAddress, ["id", "user_id", "email", "verified", "primary"])
        totp = sink.table(Authenticator, ["id", "user_id", "type", "data", "created_at"])
        user_groups = sink.table(User.groups.through, ["id", "user_id", "group_id"])
        self.user_joined = {}

        def person(uid, email, first, last, joined_t, *, staff=False, region=None, group=None):
            users.add((str(uid), password, "f", first, last, "t" if staff else "f", "t", ts(joined_t), email,
                       str(region) if region else N))  # fmt: skip
            emails.add((str(uid), str(uid), email, "t", "t"))
            if staff:
                totp.add((str(totp.count + len(totp.rows) + 1), str(uid), "totp", json.dumps({"secret": TOTP_SECRET}),
                          ts(joined_t + 3600)))  # fmt: skip
                user_groups.add((str(user_groups.count + len(user_groups.rows) + 1), str(uid), str(groups[group])))

        def staff_joined():
            return c.mid[c.anchor - 6 * 365 - rng.randint(10, 800)] + 9 * 3600 + rng.randint(0, 3600)

        def name_for(country):
            return _pick(rng, FIRST_NAMES[country]), _pick(rng, FAMILIES[country])

        person(self.admin_id, "admin@vendor-scale.example", "Channel", "Admin", staff_joined(), staff=True,
               group=StaffRole.CHANNEL_ADMIN)  # fmt: skip
        for n, region in enumerate(self.regions, start=1):
            first, last = name_for(region["country"])
            person(region["rd"], f"rd{n}@vendor-scale.example", first, last, staff_joined(), staff=True,
                   region=region["id"], group=StaffRole.REGIONAL_DIRECTOR)  # fmt: skip
        n = 0
        for region in self.regions:
            for pm in sorted(region["pms"]):
                n += 1
                first, last = name_for(region["country"])
                person(pm, f"pm{pm - self.regions[-1]['rd']}@vendor-scale.example", first, last, staff_joined(),
                       staff=True, region=region["id"], group=StaffRole.PARTNER_MANAGER)  # fmt: skip
        for n, uid in enumerate(self.direct_ids, start=1):
            first, last = name_for("NL")
            person(uid, f"direct{n}@vendor-scale.example", first, last, staff_joined(), staff=True,
                   region=self.regions[0]["id"], group=StaffRole.DIRECT_SALES)  # fmt: skip

        regions = sink.table(Region, ["id", "name", "code", "regional_director_id"])
        for region in self.regions:
            regions.add((str(region["id"]), region["name"], region["code"], str(region["rd"])))

        orgs = sink.table(Organisation, ["id", "name", "kind", "status", "region_id", "partner_manager_id", "city",
                                         "country", "website", "vat_number", "company_number", "joined_on",
                                         "created_at"])  # fmt: skip
        members = sink.table(Membership, ["id", "user_id", "organisation_id", "role", "created_at"])
        for d in self.dealers:
            city = _pick(rng, PLACES[d.country])
            vat, company = vat_number(rng, d.country)
            site = f"https://www.{_ascii(d.name)[:40]}.example"
            created = c.mid[d.joined] + 9 * 3600 + rng.randint(0, 7200)
            orgs.add((str(d.id), _esc(d.name), "reseller", d.status, str(d.region["id"]), str(d.pm) if d.pm else N,
                      city, d.country, site, vat.replace(" ", "").replace(".", "")[:20], company, c.dates[d.joined],
                      ts(created)))  # fmt: skip
            for k, uid in enumerate(d.users, start=1):
                first, last = name_for(d.country)
                joined_t = created + k * 1800
                self.user_joined[uid] = joined_t
                person(uid, f"dealer{d.num}.{k}@scale.example", first, last, joined_t)
                members.add((str(members.count + len(members.rows) + 1), str(uid), str(d.id),
                             "admin" if k == 1 else "user", ts(joined_t)))  # fmt: skip
        for dist in self.distributors:
            joined = c.anchor - 10 * 365 - rng.randint(0, 1000)
            created = c.mid[joined] + 10 * 3600
            vat, company = vat_number(rng, dist["country"])
            orgs.add((str(dist["id"]), _esc(dist["name"]), "distributor", "active", str(dist["region"]["id"]),
                      str(dist["pm"]) if dist["pm"] else N, _pick(rng, PLACES[dist["country"]]), dist["country"],
                      f"https://www.{_ascii(dist['name'])[:40]}.example", vat.replace(" ", "").replace(".", "")[:20],
                      company, c.dates[joined], ts(created)))  # fmt: skip
            for k, uid in enumerate(dist["users"], start=1):
                first, last = name_for(dist["country"])
                person(uid, f"distributor{dist['num']}.{k}@scale.example", first, last, created + k * 1800)
                members.add((str(members.count + len(members.rows) + 1), str(uid), str(dist["id"]),
                             "admin" if k == 1 else "user", ts(created + k * 1800)))  # fmt: skip
        through = sink.table(Organisation.distributors.through, ["id", "from_organisation_id", "to_organisation_id"])
        n = 0
        for d in self.dealers:
            for did in sorted(d.distributors):
                n += 1
                through.add((str(n), str(d.id), str(did)))
        territories = sink.table(Territory, ["id", "organisation_id", "country", "postcode_from", "postcode_to",
                                             "exclusive"])  # fmt: skip
        for n, (oid, country, low, high, exclusive) in enumerate(self.territory_rows, start=1):
            territories.add((str(n), str(oid), country, low, high, "t" if exclusive else "f"))

        lines = sink.table(ProductLine, ["id", "name", "code", "protection_days", "direct_only"])
        for line in self.lines:
            lines.add((str(line["id"]), line["name"], line["code"], str(line["days"]) if line["days"] else N,
                       "t" if line["direct"] else "f"))  # fmt: skip
        products = sink.table(Product, ["id", "line_id", "sku", "name", "list_price", "active"])
        for pid, line_id, sku, name, cents in self.products:
            products.add((str(pid), str(line_id), sku, name, _cents(cents), "t"))
        holidays = sink.table(Holiday, ["id", "date", "name"])
        for n, day in enumerate(self.holidays, start=1):
            label = {(1, 1): "Nieuwjaarsdag", (12, 25): "Eerste Kerstdag", (12, 26): "Tweede Kerstdag"}
            holidays.add((str(n), day.isoformat(), label[(day.month, day.day)]))
        named = sink.table(NamedAccount, ["id", "name", "city", "country", "website", "vat_number", "company_number",
                                          "reserved_for_id", "note", "active"])  # fmt: skip
        for account in sorted(self.named.values(), key=lambda a: a["id"]):
            holder = account["holder"]
            named.add((str(account["id"]), _esc(account["name"]), account["city"], account["country"],
                       account["website"], account["vat"][:20], account["company_number"],
                       str(holder.id) if holder else N, "Strategic account" if holder is None else "Reserved dealer",
                       "t"))  # fmt: skip
        certifications = sink.table(Certification, ["id", "name", "code"])
        for n, (name, code) in enumerate(CERTIFICATIONS, start=1):
            certifications.add((str(n), name, code))
        standings = sink.table(DealerStanding, ["id", "organisation_id", "tier_id", "since"])
        changes = sink.table(TierChange, ["id", "organisation_id", "changed_on", "created_at", "kind", "to_tier_id",
                                          "reason"])  # fmt: skip
        n = 0
        for d in self.dealers:
            if d.tier is None:
                continue  # terminated (not evaluated) or onboarding (first evaluated by the next nightly run)
            n += 1
            since = max(d.joined + 1, c.anchor - rng.randint(30, 700))
            standings.add((str(n), str(d.id), str(d.tier.pk), c.dates[since]))
            changes.add((str(n), str(d.id), c.dates[since], ts(c.mid[since] + 2 * 3600 + rng.randint(60, 900)),
                         "start", str(d.tier.pk), f"First evaluation: {d.tier.name}."))  # fmt: skip

    # --- registrations -----------------------------------------------------------------------------------

    def _submission_keys(self) -> array:
        """Every registration's first submission (epoch seconds) and dealer, sorted by time: ids and
        reference numbers follow the submission order, as they do in the portal. A dealer registers
        25 % more every year, on working days, in office hours."""
        c, dealers = self.clock, self.dealers
        rng = random.Random(f"{self.p.seed}:times")
        k = math.log(1.25) / 365
        n_dealers = len(dealers)
        keys = array("q")
        for d in dealers:
            length = d.end - d.start + 1
            ekl = math.expm1(k * length)
            for _ in range(d.n):
                day = d.start + min(length - 1, int(math.log1p(rng.random() * ekl) / k))
                wd = c.weekday[day]
                if wd >= 5 and rng.random() < 0.9:
                    day = day - 1 if wd == 5 else (day + 1 if day + 1 <= d.end else day - 2)
                    day = max(d.start, day)
                t = c.mid[day] + int(rng.triangular(7.5 * 3600, 18.5 * 3600, 10.5 * 3600))
                keys.append(t * n_dealers + d.idx)
        return array("q", sorted(keys))

    def write_registrations(self) -> None:
        from deals.models import (
            Conflict,
            Customer,
            ExtensionRequest,
            NotSameCustomer,
            Registration,
            RegistrationEvent,
            RegistrationFlag,
            RegistrationLine,
        )
        from deals.privacy import months_before
        from tiers.models import Sale, SatisfactionScore

        sink = self.sink
        self.t_customers = sink.table(Customer, [
            "id", "organisation_id", "name", "city", "postcode", "country", "website", "vat_number", "company_number",
            "created_at", "name_key", "vat_key", "register_key", "domain_key"])  # fmt: skip
        self.t_registrations = sink.table(Registration, [
            "id", "reference", "organisation_id", "registered_by_id", "customer_id", "contact_name", "contact_email",
            "contact_phone", "expected_value", "expected_close_date", "competitors", "decision_stage", "next_steps",
            "status", "status_changed_at", "first_submitted_at", "review_started_at", "review_remind_at",
            "review_due_at", "reminded_at", "overdue_at", "decided_at", "decided_by_id", "review_working_hours",
            "decided_in_time", "protected_until", "margin_percent", "extension_count", "expiry_warnings_sent",
            "last_activity_at", "stale_flagged_at", "won_value", "won_date", "lost_reason", "lost_competitor",
            "anonymised_at"])  # fmt: skip
        self.t_lines = sink.table(RegistrationLine, ["id", "registration_id", "product_id", "quantity", "value"])
        self.t_events = sink.table(RegistrationEvent, [
            "id", "registration_id", "actor_id", "created_at", "action", "from_status", "to_status", "reason",
            "internal_note"])  # fmt: skip
        self.t_flags = sink.table(RegistrationFlag, ["id", "registration_id", "kind", "explanation", "created_at"])
        self.t_requests = sink.table(ExtensionRequest, [
            "id", "registration_id", "requested_by_id", "requested_at", "reason", "status", "decided_by_id",
            "decided_at", "decision_reason"])  # fmt: skip
        self.t_conflicts = sink.table(Conflict, [
            "id", "registration_id", "other_id", "kind", "score", "reasons", "status", "created_at", "decided_by_id",
            "decided_at", "winner_id", "customer_chose", "note"])  # fmt: skip
        self.t_apart = sink.table(NotSameCustomer, ["id", "customer_low_id", "customer_high_id", "decided_by_id",
                                                    "decided_at"])  # fmt: skip
        self.t_sales = sink.table(Sale, [
            "id", "erp_line_id", "sold_on", "reseller_id", "distributor_id", "customer_name", "customer_city",
            "customer_country", "customer_vat", "product_line_id", "amount", "registration_reference",
            "registration_id", "registered_before_sale", "imported_at"])  # fmt: skip
        self.t_scores = sink.table(SatisfactionScore, ["id", "organisation_id", "score", "recorded_on", "sale_id",
                                                       "registration_id", "recorded_by_id"])  # fmt: skip
        self.ids = {"customer": 1, "line": 1, "event": 1, "flag": 1, "request": 1, "conflict": 1, "apart": 1,
                    "sale": 1, "score": 1}  # fmt: skip
        self.year_first: dict[int, int] = {}
        self.counter: dict[int, int] = {}
        self.cust_last_reg = array("q")
        self.cust_last_close = array("q")
        self.registry: dict[int, list] = {}
        self.apart: set[tuple[int, int]] = set()
        self.lost_labels = dict(Registration.LostReason.choices)
        self.lost_codes = list(self.lost_labels)
        now_dt = datetime.fromtimestamp(self.now, self.tz)
        self.retention_cutoff = int(months_before(now_dt, self.retention).timestamp())

        t0 = time.perf_counter()
        keys = self._submission_keys()
        self.timings["submission times"] = time.perf_counter() - t0
        rng = random.Random(f"{self.p.seed}:registrations")
        n_dealers = len(self.dealers)
        total = len(keys)
        step = max(1, min(100_000, total // 10))
        started = time.perf_counter()
        for i in range(total):
            t, di = divmod(keys[i], n_dealers)
            self._registration(i + 1, t, self.dealers[di], rng)
            if (i + 1) % step == 0 or i + 1 == total:
                elapsed = time.perf_counter() - started
                self.out(f"  {i + 1:>9,} registrations ({elapsed:5.1f} s, {(i + 1) / elapsed:,.0f}/s)")
                if (i + 1) % (step * 5) == 0:
                    self._prune(t)
        del keys
        self.timings["registrations"] = time.perf_counter() - started

    def _prune(self, t: int) -> None:
        for rc in list(self.registry):
            alive = [e for e in self.registry[rc] if e[4] > t]
            if alive:
                self.registry[rc] = alive
            else:
                del self.registry[rc]

    def _reference(self, rid: int) -> str:
        year = max(y for y, first in self.year_first.items() if first <= rid)
        return f"REG-{year}-{rid - self.year_first[year] + 1:06d}"

    # one registration: its customer, lines, life, flags, conflicts and rows
    def _registration(self, rid: int, t0: int, d: _Dealer, rng: random.Random) -> None:
        c = self.clock
        ts = c.ts
        year = c.years[c.day(t0)]
        first = self.year_first.get(year)
        if first is None:
            self.year_first[year] = first = rid
        number = rid - first + 1
        self.counter[year] = number
        ref = f"REG-{year}-{number:06d}"
        registrant = d.admin if len(d.users) == 1 or rng.random() < 0.4 else _pick(rng, d.users)

        cust = self._customer(rng, d, t0)
        cid, rc = int(cust[0]), int(cust[8])
        city, postcode, country = cust[2], cust[3], cust[4]

        # lines: mostly the dealer's own product lines; now and then a big project
        u = rng.random()
        n_lines = 1 if u < 0.55 else (2 if u < 0.85 else 3)
        project = rng.uniform(5, 20) if rng.random() < 0.03 else 1.0
        items = []
        for _ in range(n_lines):
            u = rng.random()
            if u < 0.012 and self.direct_lines:
                line = _pick(rng, self.direct_lines)
            elif u < 0.85:
                line = _pick(rng, d.fav_lines)
            else:
                line = _pick(rng, self.regular_lines)
            product = _pick(rng, self.products_by_line[line])
            price = product[4]
            quantity = max(1, min(2000, round(rng.lognormvariate(8.5, 1.0) * 100 * project / price)))
            value = max(1, int(price * quantity * rng.uniform(0.78, 1.0)))
            items.append((product[0], line, quantity, value))
        expected = sum(item[3] for item in items)
        line_set = frozenset(item[1] for item in items)
        days = max(self.lines[li - 1]["days"] or self.protection_days for li in line_set)

        # the channel-rule flags (deals.conflicts._channel_rule_flags)
        flags = []
        record = None
        if rc >= 0:
            record = self._record(cust)
            account = self.named.get(rc)
            if account and account["holder"] is not d:
                found = self.match(record, account)
                if found.is_same_customer:
                    holder = account["holder"].name if account["holder"] else "the vendor's direct team"
                    flags.append(("named_account", f"{account['name']} is a named account reserved for {holder} "
                                                   f"({'; '.join(found.reasons)})."))  # fmt: skip
        code = postcode.replace(" ", "").upper()
        exclusive = self.exclusive.get((country, code[:3]))
        if exclusive and exclusive[0] != d.idx and self.dealers[exclusive[0]].status != "terminated":
            holder = self.dealers[exclusive[0]]
            flags.append(("territory", f"Postcode {postcode} lies in the exclusive territory of {holder.name} "
                                       f"({exclusive[1]})."))  # fmt: skip
        if d.territories and not d.country_wide and code[:3] not in d.own_prefixes and code[:2] not in d.own_prefixes:
            flags.append(("territory", f"{postcode} {city} ({country}) lies outside the dealer's own territories."))
        if expected > self.threshold_cents:
            flags.append(("segment", f"Expected value € {Decimal(expected).scaleb(-2):,} is above the enterprise "
                                     f"threshold of € {self.threshold_text}: enterprise deals are normally the direct "
                                     "team's."))  # fmt: skip
        direct = sorted({self.lines[li - 1]["name"] for li in line_set if self.lines[li - 1]["direct"]})
        if direct:
            flags.append(("direct_only", f"{', '.join(direct)} is sold by the vendor's direct team only."))
        flagged = bool(flags)
        ci = cid - 1
        previous = self.cust_last_reg[ci]
        if previous and self.cust_last_close[ci] > t0:
            flags.append(("own_duplicate", f"You registered this customer before: {self._reference(previous)}."))

        # other dealers' active registrations of the same customer (deals.conflicts.conflicts_detect)
        found_conflicts = []
        if rc >= 0 and rc in self.registry:
            entries = [e for e in self.registry[rc] if e[4] > t0]  # closed ones can never conflict again
            self.registry[rc] = entries
            for e in entries:
                if e[1] == d.idx or e[3] > t0:
                    continue
                pair = (cid, e[2]) if cid < e[2] else (e[2], cid)
                if pair in self.apart:
                    continue
                found = self.match(record, self._record(e[7]))
                if found.is_same_customer:
                    kind = "conflict" if line_set & e[5] else "related"
                    found_conflicts.append((e, kind, found))
        blocking = [e for e, kind, _found in found_conflicts if kind == "conflict"]

        u = rng.random()
        stage = "" if u < 0.1 else ("early" if u < 0.5 else ("mid" if u < 0.85 else "late"))
        life = self._life(rng, d, t0, registrant, days, flagged, blocking, stage, expected)

        # --- rows ----------------------------------------------------------------------------------------
        status = life.outcome
        first_name, last_name = _pick(rng, FIRST_NAMES[country]), _pick(rng, FAMILIES[country])
        anonymised = None
        if status not in OPEN:
            anonymised = self._anonymised_at(life.changed)
        if anonymised is None:
            contact = _esc(f"{first_name} {last_name}")
            email = f"{self._ascii(first_name)}.{self._ascii(last_name)}@{cust[9] or 'mail.example'}"
            phone = (
                {"NL": "+31 6 ", "BE": "+32 47 ", "DE": "+49 151 "}[country] + str(1000000 + int(rng.random() * 9e6))
                if rng.random() < 0.6
                else ""
            )
        else:
            contact, email, phone = "(anonymised)", "anonymised@anonymised.invalid", ""
        close_day = c.day(t0) + 14 + int(rng.random() * 167)
        competitors = ""
        if rng.random() < 0.3:
            competitors = _pick(rng, COMPETITORS)
            if rng.random() < 0.4:
                other = _pick(rng, COMPETITORS)
                competitors += f", {other}" if other != competitors else ""
        next_steps = _pick(rng, NEXT_STEPS) if rng.random() < 0.4 else ""
        P = life.P
        self.t_registrations.add((
            str(rid), ref, str(d.id), str(registrant), str(cid), contact, email, phone, _cents(expected),
            c.dates[close_day], competitors, life.stage, next_steps, status, ts(life.changed), ts(t0),
            ts(life.start), ts(life.remind), ts(life.due), ts(life.reminded) if life.reminded else N,
            ts(life.overdue) if life.overdue else N, ts(life.decided_at) if life.decided_at else N,
            str(life.decided_by) if life.decided_by else N, life.wh or N,
            N if life.in_time is None else ("t" if life.in_time else "f"), c.dates[P] if P is not None else N,
            life.margin or N, str(life.ext or 0), str(life.warn or 0), ts(life.last),
            ts(life.stale) if life.stale else N, _cents(life.won_cents) if life.won_cents else N,
            c.dates[life.won_day] if life.won_day is not None else N, life.lost_reason or "", life.lost_comp or "",
            ts(anonymised) if anonymised else N,
        ))  # fmt: skip
        ids = self.ids
        for product, _line, quantity, value in items:
            self.t_lines.add((str(ids["line"]), str(rid), str(product), str(quantity), _cents(value)))
            ids["line"] += 1
        srid = str(rid)
        for t, action, source, target, actor, reason, note in life.events:
            self.t_events.add((str(ids["event"]), srid, str(actor) if actor else N, ts(t), action, source, target,
                               _esc(reason), _esc(note)))  # fmt: skip
            ids["event"] += 1
        for kind, explanation in flags:
            self.t_flags.add((str(ids["flag"]), srid, kind, _esc(explanation[:500]), ts(life.flag_time)))
            ids["flag"] += 1
        for requested, reason, state, decider, decided, decision in life.requests:
            self.t_requests.add((str(ids["request"]), srid, str(registrant), ts(requested), reason, state,
                                 str(decider) if decider else N, ts(decided) if decided else N, decision))  # fmt: skip
            ids["request"] += 1
        if found_conflicts:
            self._conflict_rows(rid, ref, cid, d, life, found_conflicts, t0)

        # the vendor's sales of a won deal (the last two years), linked to the registration
        if status == "won" and life.won_day >= c.anchor - 729:
            self._won_sales(rng, rid, ref, d, cust, items, expected, life)

        close = life.close if life.close is not None else INF
        self.cust_last_reg[ci] = rid
        self.cust_last_close[ci] = close
        if rc >= 0:
            self.registry.setdefault(rc, []).append((rid, d.idx, cid, t0, close, line_set, ref, cust))

    @staticmethod
    def _record(cust: list) -> dict:
        return {"name": cust[1], "city": cust[2], "postcode": cust[3], "country": cust[4], "website": cust[5],
                "vat": cust[6], "company_number": cust[7]}  # fmt: skip

    def _anonymised_at(self, changed: int) -> int | None:
        """When the nightly job (deals.privacy.contacts_anonymise) anonymised the contact of a
        registration closed at `changed`, or None if it has not yet."""
        c = self.clock
        if changed > self.retention_cutoff:
            return None
        i = c.day(changed)
        due_day = (_add_months(c.date(i), self.retention) - c.base).days
        due = c.mid[due_day] + (changed - c.mid[i])
        job = c.mid[due_day] + NIGHT["anonymise"]
        if job < due:
            job = c.mid[due_day + 1] + NIGHT["anonymise"]
        return job if job <= self.now else None

    def _customer(self, rng, d: _Dealer, t0: int) -> list:
        """The dealer's customer for this registration: an earlier one (repeat business), a real
        customer other dealers know too (in the dealer's own spelling), or a new one. Returned as the
        packed fields: id, name, city, postcode, country, website, vat, company, real customer (-1:
        none), domain."""
        known = d.customers
        if known and rng.random() < d.repeat:
            for _attempt in range(2):  # a customer with an open registration is mostly left alone
                if rng.random() < 0.6:
                    packed = known[-1 - int(rng.random() * min(30, len(known)))]
                else:
                    packed = _pick(rng, known)
                fields = packed.split("\t")
                if self.cust_last_close[int(fields[0]) - 1] <= t0 or rng.random() < 0.4:
                    break
            return fields
        country = d.country
        rc = -1
        if rng.random() < 0.07:
            region = d.region["id"]
            cum = self.pool_cum[region]
            item = self.pool[region][bisect.bisect_left(cum, rng.random() * cum[-1])]
            rc = item[0]
            if rc in d.shared:
                return d.shared[rc].split("\t")
            _pid, canonical, city, postcode, country, site, vat, company = item
            u = rng.random()
            if u < 0.35:
                name = canonical
            elif u < 0.65:
                name = variant(rng, canonical, country)
            elif u < 0.85:
                name = typo(rng, canonical)
            else:
                name = typo(rng, variant(rng, canonical, country))
            vat = _typed_vat(rng, vat) if vat and rng.random() < 0.6 else ""
            company = company if company and rng.random() < 0.4 else ""
            if site and rng.random() < 0.5:
                bare = re.sub(r"^(https?://)?(www\.)?", "", site)
                site = rng.choice(["https://www.", "www.", "http://", ""]) + bare
            else:
                site = ""
            if country == "NL" and rng.random() < 0.2:
                postcode = postcode.replace(" ", "")
        else:
            name = business_name(rng, country)
            city = _pick(rng, PLACES[country])
            postcode = self._customer_postcode(rng, d)
            vat, company = vat_number(rng, country) if rng.random() < 0.30 else ("", "")
            site = website(rng, name, country, city) if rng.random() < 0.20 else ""
        cid = self.ids["customer"]
        self.ids["customer"] = cid + 1
        name = name[:200]
        vat = vat.strip()[:20]
        keys = self.customer_keys(
            SimpleNamespace(name=name, country=country, vat_number=vat, company_number=company, website=site)
        )
        self.t_customers.add((
            str(cid), str(d.id), _esc(name), city, postcode, country, _esc(site), vat, company, self.clock.ts(t0),
            _esc(keys["name_key"]), keys["vat_key"], keys["register_key"], _esc(keys["domain_key"]),
        ))  # fmt: skip
        self.cust_last_reg.append(0)
        self.cust_last_close.append(0)
        fields = [str(cid), name, city, postcode, country, site, vat, company, str(rc), keys["domain_key"]]
        packed = "\t".join(fields)
        known.append(packed)
        if rc >= 0:
            d.shared[rc] = packed
        return fields

    def _ascii(self, text: str) -> str:
        folded = self.ascii_names.get(text)
        if folded is None:
            folded = self.ascii_names[text] = _ascii(text)
        return folded

    def _customer_postcode(self, rng, d: _Dealer) -> str:
        if d.territories and not d.country_wide and d.own_prefixes and rng.random() < 0.95:
            prefix = _pick(rng, sorted(d.own_prefixes))
            if len(prefix) == 3:
                return self._postcode_in_area(rng, d.region, three=prefix)
            return self._postcode_in_area(rng, d.region, two=int(prefix))
        return self._postcode_in_area(rng, d.region)

    # --- a registration's life -------------------------------------------------------------------------

    def _review_time(self, rng, start: int) -> int:
        """When the reviewer decides: most within the SLA, some late; in office hours."""
        c = self.clock
        u = rng.random()
        if u < 0.8:
            hours = min(self.sla_hours - 2.0, rng.lognormvariate(1.8, 0.9))
        elif u < 0.95:
            hours = rng.uniform(self.sla_hours, 2 * self.sla_hours)
        else:
            hours = rng.uniform(2 * self.sla_hours, 5 * self.sla_hours)
        t = c.add_wh(start, hours)
        return self._office(rng, t, start)

    def _office(self, rng, t: int, after: int) -> int:
        """t, or the next working morning if t falls outside office hours."""
        c = self.clock
        i = c.day(t)
        tod = t - c.mid[i]
        if c.work[i] and 7 * 3600 <= tod <= 19 * 3600:
            return t
        if tod > 19 * 3600:
            i += 1
        i = c.next_work(i)
        t = c.mid[i] + 8 * 3600 + int(rng.random() * 3 * 3600)
        return t if t > after else after + 300 + int(rng.random() * 3300)

    def _director_time(self, rng, t: int) -> int:
        return self._office(rng, t + int(rng.uniform(0.3, 8) * 86400), t)

    def _dealer_time(self, rng, t: int, after: int) -> int:
        """About t, on a working day (mostly) in office hours, and after `after`."""
        c = self.clock
        i = c.day(t)
        if not c.work[i] and rng.random() < 0.9:
            i = c.next_work(i)
        t = c.mid[i] + 8 * 3600 + int(rng.random() * 10 * 3600)
        return t if t > after else after + 300 + int(rng.random() * 6900)

    def _warnings(self, P: int, reset: int, until: int) -> int:
        """expiry_warnings_sent by the last nightly warning run up to `until` (deals.services.expiry_warnings_send)."""
        c = self.clock
        j = c.day(until)
        if until < c.mid[j] + NIGHT["warnings"]:
            j -= 1
        jr = c.day(reset)
        if reset >= c.mid[jr] + NIGHT["warnings"]:
            jr += 1
        j = min(j, P)
        if j < jr:
            return 0
        left = P - j
        return 2 if left <= self.warn_second else (1 if left <= self.warn_first else 0)

    def _stale(self, last: int, until: int) -> int | None:
        """When the nightly stale run (deals.services.stale_registrations_flag) flagged a protection
        without activity since `last`, if it did by `until`."""
        c = self.clock
        target = last + self.stale_seconds
        j = c.day(target)
        job = c.mid[j] + NIGHT["stale"]
        if job <= target:
            job = c.mid[j + 1] + NIGHT["stale"]
        return job if job <= until else None

    def _life(self, rng, d: _Dealer, t0: int, registrant: int, days: int, flagged: bool, blocking: list,
              stage: str, expected: int) -> _Life:  # fmt: skip
        """Everything that happened to the registration up to "now": the moves of
        deals.services.TRANSITIONS with their history rows and the fields each move sets."""
        c, now = self.clock, self.now
        life = _Life()
        ev = [(t0, "submit", "", "submitted", registrant, "", "")]
        reviewer, rd = d.reviewer, d.rd
        actor = registrant if rng.random() < 0.8 else d.admin  # who acts for the dealer later on
        status = "submitted"
        start = t0
        remind, due = c.add_wh(start, self.reminder_hours), c.add_wh(start, self.sla_hours)
        decided_at = decided_by = wh = in_time = P = approved_at = None
        cdec = None
        rounds = 0
        flag_time = t0

        def move(t, action, target, who, reason="", note=""):
            nonlocal status
            ev.append((t, action, status, target, who, reason, note))
            status = target

        while True:
            dt = self._review_time(rng, start)
            if dt > now:
                break
            if blocking and rounds == 0 and max(e[4] for e in blocking) > dt:
                # still blocked by another dealer's earlier registration when the reviewer looks at it
                u = rng.random()
                if u < 0.08:
                    w = start + int((dt - start) * rng.uniform(0.2, 0.9))
                    move(w, "withdraw", "withdrawn", actor, WITHDRAW_REASON)
                    cdec = ("withdraw", w, None, None, False, "")
                    break
                if u < 0.15:  # not the same customer after all: dismissed, then reviewed as usual
                    cdec = ("dismiss", dt, None, None, False, "")
                    dt += rng.randint(120, 1800)
                    if dt > now:
                        break
                elif u < 0.32:
                    note = f"Conflict with {blocking[0][6]}: the dealer says it was there first."
                    move(dt, "escalate", "escalated", reviewer, NEUTRAL_REVIEW, note)
                    e_t = self._director_time(rng, dt)
                    if e_t > now:
                        cdec = ("escalate", dt, None, None, False, note)
                        break
                    if all(e[4] <= e_t for e in blocking):  # the earlier side closed meanwhile
                        decided_at, decided_by, wh, in_time = e_t, rd, c.wh_between(start, e_t), e_t <= due
                        P = c.day(e_t) + days
                        move(e_t, "award", "approved", rd, AWARD_REASON, "Decided by the regional director.")
                        cdec = ("escalate", dt, "later", e_t, False, "")
                        approved_at = e_t
                    else:
                        chose = rng.random() < 0.3
                        winner = next(e for e in blocking if e[4] > e_t)
                        why = "The customer chose." if chose else "Decided by the regional director."
                        decided_at, decided_by = e_t, rd
                        move(e_t, "decline", "rejected", rd, NEUTRAL_REJECTION, why)
                        cdec = ("escalate", dt, winner[0], e_t, chose, "")
                    break
                else:  # the earliest registration keeps the customer (conflict_award_earliest)
                    note = _pick(rng, ["", "Earlier registration keeps the customer."])
                    decided_at, decided_by, wh, in_time = dt, reviewer, c.wh_between(start, dt), dt <= due
                    winner = next(e for e in blocking if e[4] > dt)
                    move(dt, "reject", "rejected", reviewer, NEUTRAL_REJECTION, note)
                    cdec = ("reject", dt, winner[0], None, False, note)
                    break
            u = rng.random()
            p_info = (0.09 if rounds == 0 else 0.03) if rounds < 2 else 0.0
            if u < p_info:
                move(dt, "request_info", "info_requested", reviewer, _pick(rng, INFO_QUESTIONS))
                if rng.random() < 0.75:
                    r_t = self._dealer_time(rng, dt + int(rng.uniform(0.1, 10) * 86400), dt)
                    if r_t > now:
                        break
                    move(r_t, "resubmit", "submitted", actor, _pick(rng, INFO_ANSWERS))
                    start = flag_time = r_t
                    remind, due = c.add_wh(start, self.reminder_hours), c.add_wh(start, self.sla_hours)
                    rounds += 1
                    continue
                w = self._dealer_time(rng, dt + rng.randint(7, 60) * 86400, dt)
                if w <= now:
                    move(w, "withdraw", "withdrawn", actor, WITHDRAW_REASON)
                break
            u = (u - p_info) / (1 - p_info)
            p_approve, p_reject, p_escalate = (0.55, 0.30, 0.12) if flagged else (0.84, 0.07, 0.01)
            if u < p_approve:
                decided_at, decided_by, wh, in_time = dt, reviewer, c.wh_between(start, dt), dt <= due
                P = c.day(dt) + days
                move(dt, "approve", "approved", reviewer, "", _pick(rng, REVIEW_NOTES))
                approved_at = dt
            elif u < p_approve + p_reject:
                decided_at, decided_by, wh, in_time = dt, reviewer, c.wh_between(start, dt), dt <= due
                move(dt, "reject", "rejected", reviewer, _pick(rng, REJECTIONS), _pick(rng, REVIEW_NOTES))
            elif u < p_approve + p_reject + p_escalate:
                note = _pick(rng, ESCALATION_NOTES)
                move(dt, "escalate", "escalated", reviewer, ESCALATE_REASON, note)
                e_t = self._director_time(rng, dt)
                if e_t <= now:
                    if rng.random() < 0.6:
                        decided_at, decided_by, wh, in_time = e_t, rd, c.wh_between(start, e_t), e_t <= due
                        P = c.day(e_t) + days
                        move(e_t, "award", "approved", rd, AWARD_REASON)
                        approved_at = e_t
                    else:
                        decided_at, decided_by = e_t, rd
                        move(e_t, "decline", "rejected", rd, _pick(rng, REJECTIONS))
            else:
                w = start + int((dt - start) * rng.uniform(0.1, 0.9))
                move(w, "withdraw", "withdrawn", actor, WITHDRAW_REASON)
            break

        # the reminder and overdue marks of the last review clock (deals.services.review_reminders_send)
        left = next((e[0] for e in ev if e[0] >= start and e[2] == "submitted"), now)
        q = -(-remind // 900) * 900
        life.reminded = q if q < left and q < due else None
        q = -(-due // 900) * 900
        life.overdue = q if q < left else None

        requests = []
        warn = 0
        stale = None
        ext = 0
        if approved_at is not None:
            a = approved_at
            reset = a
            o = self._dealer_time(rng, a + int(rng.expovariate(1.0 / d.speed) * 86400) + 3600, a)
            u = rng.random()
            outcome = "won" if u < d.win else ("lost" if u < d.win + (1 - d.win) * 0.85 else "withdrawn")
            if rng.random() < (0.03 if flagged else 0.004):
                outcome = "revoke"
            E = c.mid[P + 1] + NIGHT["expire"]
            if rng.random() < 0.3:
                u_t = a + int((min(o, E) - a) * rng.uniform(0.15, 0.6))
                if a < u_t <= now:
                    move(u_t, "update", "approved", actor, UPDATE_REASON)
                    stage = _NEXT_STAGE[stage]
            while o >= E and ext < self.max_extensions and rng.random() < 0.5:
                q = self._dealer_time(rng, c.mid[P - rng.randint(2, 12)], max(a, ev[-1][0]))
                if q >= E or q > now:
                    break
                x = self._office(rng, c.add_wh(q, rng.uniform(2, 30)), q)
                reason = _pick(rng, EXTENSION_REASONS)
                if x >= E:  # nobody decided before the protection ended
                    requests.append([q, reason, "pending", None, None, ""])
                    break
                if x > now:
                    requests.append([q, reason, "pending", None, None, ""])
                    break
                if rng.random() < 0.85:
                    P += self.extension_days
                    ext += 1
                    reset = x
                    text = f"Protection extended by {self.extension_days} days, until {c.date(P):%d %B %Y}."
                    move(x, "extend", "approved", reviewer, text)
                    requests.append([q, reason, "approved", reviewer, x, text])
                    E = c.mid[P + 1] + NIGHT["expire"]
                    continue
                text = _pick(rng, EXTENSION_DECLINES)
                move(x, "extension_declined", "approved", reviewer, text)
                requests.append([q, reason, "declined", reviewer, x, text])
                break
            leave = None
            if o >= E:
                if E <= now:
                    move(E, "expire", "expired", None, EXPIRE_REASON)
                    leave = E
            elif o <= now:
                leave = o
                if outcome == "won":
                    life.won_cents = max(100, int(expected * rng.uniform(0.8, 1.15)))
                    life.won_day = max(c.day(t0), c.day(o) - rng.randint(0, 6))
                    move(o, "report_won", "won", actor, f"Won: € {Decimal(life.won_cents).scaleb(-2):,}")
                elif outcome == "lost":
                    code = _pick(rng, self.lost_codes)
                    life.lost_reason = code
                    if code == "competitor":
                        life.lost_comp = _pick(rng, COMPETITORS)
                    move(o, "report_lost", "lost", actor, f"Lost: {self.lost_labels[code]}")
                elif outcome == "withdrawn":
                    move(o, "withdraw", "withdrawn", actor, WITHDRAW_REASON)
                else:  # a protection taken back over a channel rule: escalated, then revoked
                    note = _pick(rng, ESCALATION_NOTES)
                    move(o, "escalate", "escalated", reviewer, ESCALATE_REASON, note)
                    e_t = self._director_time(rng, o)
                    if e_t <= now:
                        decided_at, decided_by = e_t, rd
                        move(e_t, "revoke", "revoked", rd, NEUTRAL_REJECTION, note)
            for request in requests:  # a pending extension request goes when the protection ends
                if request[2] == "pending" and leave is not None and request[0] < leave:
                    request[2:] = ["cancelled", None, leave, "The protection ended."]
            until = leave if leave is not None else now
            warn = self._warnings(P, reset, until)
            if status in ("approved", "expired"):
                last_move = max(e[0] for e in ev if e[1] != "expire")
                last_request = max((r[0] for r in requests), default=0)
                stale = self._stale(max(last_move, last_request), until)

        ev.sort(key=lambda e: e[0])
        life.events = ev
        life.outcome = status
        life.changed = max(e[0] for e in ev if e[2] != e[3])
        life.last = max(max(e[0] for e in ev if e[1] != "expire"), max((r[0] for r in requests), default=0))
        life.start, life.remind, life.due = start, remind, due
        life.decided_at, life.decided_by, life.wh, life.in_time = decided_at, decided_by, wh, in_time
        life.P = P
        life.margin = d.margin if P is not None else None
        life.ext, life.warn, life.stale = ext, warn, stale
        life.requests = requests
        life.cdec = cdec
        life.stage = stage
        life.flag_time = flag_time
        life.close = next((e[0] for e in ev if e[3] not in OPEN), INF)
        return life

    # --- conflicts, sales ----------------------------------------------------------------------------------

    def _conflict_rows(self, rid: int, ref: str, cid: int, d: _Dealer, life: _Life, found: list, t0: int) -> None:
        """The conflict rows of a registration with the earlier registrations it touched, in the
        state their decisions (or the closing of either side) left them in."""
        ts, now, ids = self.clock.ts, self.now, self.ids
        cdec = life.cdec
        for e, kind, match in found:
            o_close = e[4]
            status, decided_at, decided_by, winner, chose, note = "open", None, None, None, False, ""
            if kind == "conflict" and cdec is not None and o_close > cdec[1]:
                action = cdec[0]
                if action == "reject":  # conflict_award_earliest
                    status, decided_at, decided_by, winner, note = "resolved", cdec[1], d.reviewer, cdec[2], cdec[5]
                elif action == "withdraw":  # conflicts_close_for
                    status, decided_at, note = "resolved", cdec[1], f"{ref} closed."
                elif action == "dismiss":  # conflict_dismiss
                    status, decided_at, decided_by = "dismissed", cdec[1], d.reviewer
                    pair = (cid, e[2]) if cid < e[2] else (e[2], cid)
                    if pair not in self.apart:
                        self.apart.add(pair)
                        self.t_apart.add((str(ids["apart"]), str(pair[0]), str(pair[1]), str(d.reviewer), ts(cdec[1])))
                        ids["apart"] += 1
                elif cdec[3] is None:  # conflict_escalate: waiting for the regional director
                    status, note = "escalated", cdec[5]
                else:  # conflict_decide
                    status, decided_at, decided_by, chose = "resolved", cdec[3], d.rd, cdec[4]
                    winner = rid if cdec[2] == "later" else cdec[2]
            else:
                first = min(life.close, o_close)
                if first <= now:
                    status, decided_at = "resolved", first
                    note = f"{ref} closed." if life.close <= o_close else f"{e[6]} closed."
            reasons = match.reasons + (
                [] if kind == "conflict" else ["Different product lines: related, not conflicting."]
            )
            self.t_conflicts.add((
                str(ids["conflict"]), str(rid), str(e[0]), kind, f"{round(match.score, 3):.3f}",
                _esc(json.dumps(reasons, ensure_ascii=False)), status, ts(t0), str(decided_by) if decided_by else N,
                ts(decided_at) if decided_at else N, str(winner) if winner else N, "t" if chose else "f", _esc(note),
            ))  # fmt: skip
            ids["conflict"] += 1

    def _won_sales(self, rng, rid: int, ref: str, d: _Dealer, cust: list, items: list, expected: int, life) -> None:
        """The vendor's sales lines of a won deal: one per product line, in the weeks after the win,
        linked to the registration (approved before the sale: registration compliance)."""
        c, ids = self.clock, self.ids
        by_line: dict[int, int] = {}
        for _product, line, _quantity, value in items:
            by_line[line] = by_line.get(line, 0) + value
        sold = min(c.anchor - 1, life.won_day + rng.randint(0, 20))
        through = str(d.distributors[0]) if d.distributors and rng.random() < 0.6 else N
        vat = self.normalize_vat(cust[6], cust[4])[:24]
        lines = sorted(by_line)
        remaining = life.won_cents
        first_sale = None
        for k, line in enumerate(lines):
            amount = remaining if k == len(lines) - 1 else max(1, life.won_cents * by_line[line] // expected)
            amount = max(1, min(amount, remaining - (len(lines) - 1 - k)))
            remaining -= amount
            sid = ids["sale"]
            ids["sale"] += 1
            first_sale = first_sale or sid
            self.t_sales.add((
                str(sid), f"SCALE-{sid:09d}", c.dates[sold], str(d.id), through, _esc(cust[1]), cust[2], cust[4], vat,
                str(line), _cents(amount), ref, str(rid), "t", c.ts(c.mid[sold + 1] + 2 * 3600 + rng.randint(0, 3599)),
            ))  # fmt: skip
        if rng.random() < 0.12:
            recorded = min(c.anchor, sold + rng.randint(7, 60))
            score = min(5, max(1, round(rng.gauss(d.quality, 0.8))))
            self.t_scores.add(
                (str(ids["score"]), str(d.id), str(score), c.dates[recorded], str(first_sale), str(rid), N)
            )
            ids["score"] += 1

    # --- the tier programme's other inputs ------------------------------------------------------------------

    def write_tier_activity(self) -> None:
        """Sales not linked to a registration, certification holdings and satisfaction scores per
        evaluated reseller (reseller_tier_activity, as tools/measure_tier_recompute.py loads them)."""
        from tiers.models import CertificationHolding

        holdings_t = self.sink.table(CertificationHolding, ["id", "organisation_id", "person_id", "certification_id",
                                                            "valid_until"])  # fmt: skip
        rng = random.Random(f"{self.p.seed}:tiers")
        ids = {"sale": self.ids["sale"], "holding": 1, "score": self.ids["score"]}
        cert_ids = list(range(1, len(CERTIFICATIONS) + 1))
        links: set[tuple[int, int]] = set()
        day = self.p.today - timedelta(days=1)  # sold up to yesterday, imported last night
        for d in self.dealers:
            if d.status in ("terminated", "onboarding"):
                continue
            sales, holdings, scores = [], [], []
            reseller_tier_activity(
                rng, d.id, max(0.05, d.size * 1.5), d.country, d.users, day=day, max_sales=40,
                line_ids=self.regular_lines, cert_ids=cert_ids, distributors=d.distributors, ids=ids, sales=sales,
                holdings=holdings,
                scores=scores, links=links, days_ahead=0, erp_prefix="SCALE-B-", registered_sales=False,
            )  # fmt: skip
            for row in sales:
                self.t_sales.add_dict(row)
            for row in holdings:
                holdings_t.add_dict(row)
            for row in scores:
                self.t_scores.add_dict(row)
        self.ids.update(sale=ids["sale"], score=ids["score"])

    def finish(self, connection) -> None:
        """The reference counters past the numbers handed out, and the id sequences past the ids."""
        from deals.models import ReferenceCounter

        ReferenceCounter.objects.bulk_create(
            [ReferenceCounter(year=year, last=last) for year, last in sorted(self.counter.items())]
        )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for table, count in self.sink.counts().items():
                    if count:
                        quoted = connection.ops.quote_name(table)
                        cursor.execute(
                            f"SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT MAX(id) FROM {quoted}))", [table]
                        )


def _typed_vat(rng: random.Random, vat: str) -> str:
    """A VAT number as one dealer types it: as is, in lower case, or in groups of four."""
    u = rng.random()
    if u < 0.6:
        return vat
    if u < 0.8:
        return vat.lower()
    compact = vat.replace(" ", "").replace(".", "")
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
