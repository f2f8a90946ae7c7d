"""Is this the same customer? Pure functions for channel-conflict detection (no database access).

``match(a, b)`` compares two customer records — mappings with ``name``, ``city``, ``country``
(ISO 3166 alpha-2) and optionally ``postcode``, ``website``, ``vat`` and ``company_number`` — and
returns a ``Match(score, is_same_customer, reasons)``. Two records are the same customer when any
one of these holds:

1. **Same VAT number**, ignoring case, spaces, dots and dashes (``be 0123.456.789`` =
   ``BE0123456789``). A VAT number typed without its country prefix gets the record's country.
2. **Same company number** (Chamber of Commerce / KBO / Handelsregister), normalised the same way,
   in the same country. Where a VAT number *contains* the company number they are compared too:
   in Belgium the VAT number is ``BE`` + the 10-digit KBO number (a 9-digit old KBO number gets a
   leading 0); in France it is ``FR`` + a 2-character key + the 9-digit SIREN (a 14-digit SIRET
   starts with the SIREN). Elsewhere they are different numbers: a Dutch VAT number
   (NL123456789B01) is *not* the KvK number, so they are never equated.
3. **Same website domain**: scheme, ``www.``, path, port and case are ignored. Generic e-mail,
   hosting and social-media domains (gmail.com, hotmail.com, ziggo.nl, facebook.com, …) say nothing
   about who the customer is and are ignored. Other subdomains are kept (shop.jansen.nl is not
   jansen.nl). Domains, VAT and company numbers match across countries.
4. **The same name in the same country.** Names are compared after ``normalize_name``: lower case;
   umlauts spelt out (ü = ue, ß = ss) and other accents dropped (é = e); legal forms removed at the
   end (B.V., N.V., VOF, GmbH & Co. KG, Ltd, SARL, … — cleanco's lists for NL, BE, DE, FR, GB, AT
   and CH plus a few it lacks) and, for the Belgian/French habit of "NV Jansen", at the start;
   punctuation dropped; ``en``/``und``/``and``/``et`` between two words read as ``&``. Then:

   - equal normalised names match ("Bakkerij Jansen B.V." = "bakkerij jansen bv");
   - so do the same words in another order ("Jansen Bakkerij") or the same letters with other
     spacing ("Van der Berg" = "Vanderberg");
   - small typos match when **both** the similarity of the normalised names (rapidfuzz ``ratio`` or
     ``token_sort_ratio``, whichever is higher) is at least 90 % **and** every word that is not in
     both names pairs up with a word on the other side that is at most one edit away (a changed,
     added, dropped or swapped letter: "Jansne" = "Jansen"), has at least 5 letters and starts with
     the same letter.

   Why the word rule: a similarity percentage alone cannot tell a typo from a different business.
   "Bakkerij Jansen" vs "Slagerij Jansen" scores 80 %, but with a longer shared part ("… Jansen en
   Zonen Amsterdam") it passes 90 %, while the one word that tells them apart — bakkerij/slagerij —
   is four edits away. Short words and first letters are where different names differ by one
   letter (Smit/Smid, ABC/ABD, Jansen/Hansen), so those never count as typos; and the 90 % on the
   whole name is naturally stricter for short names (one wrong letter in a 6-letter name is 83 %).
   Known limit: a one-letter difference inside a longer word (Janssen/Jansen, Peters/Peeters)
   counts as a typo, which is usually right for Dutch family names but not always.

   Names alone never match across countries (or when a country is missing): "Jansen Transport B.V."
   in NL and "Jansen Transport GmbH" in DE are different companies unless a number or domain says
   otherwise. The same city or postcode is not required; it raises the score.

**Score** (0.0–1.0): same VAT or company number 1.0; same domain 0.95; equal normalised names 0.9;
word order or spacing 0.88; a typo match 0.8–0.9 by similarity. The same city and the same postcode
(same country) each add 0.05, up to 1.0; a name-only match between records with different VAT
numbers loses 0.1 (still a match: conflicts are better shown than missed). Records that are not the
same customer score 0.6 × name similarity (+ city/postcode), capped at 0.69, so
``score >= 0.7`` exactly when ``is_same_customer``. ``match`` is symmetric.

For the database candidate lookup: ``normalize_vat``, ``company_digits``, ``normalize_domain`` and
``name_key`` (the normalised name, for a trigram index) give the values to store and query on.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import permutations
from urllib.parse import urlsplit

from cleanco import basename
from cleanco.termdata import terms_by_country
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

NAME_THRESHOLD = 90  # % similarity of the normalised names for a typo match
TYPO_MIN_LENGTH = 5  # shorter words must be spelt exactly the same
MATCH_SCORE = 0.7  # score >= MATCH_SCORE exactly when is_same_customer

# cleanco has legal forms for ~80 countries; terms such as "co", "as", "et" or "company" from far
# away would eat real name words, so only the countries this portal serves are used.
_COUNTRIES = ["Netherlands", "Belgium", "Germany", "France", "United Kingdom", "Austria", "Switzerland"]
_MISSING = [
    "bv", "nv", "cv", "b v", "n v", "bv ba", "commv", "asbl", "srl", "sa", "sas", "sasu", "se",
    "kg", "ohg", "e.k.", "ug", "ug haftungsbeschraenkt", "gmbh & co kg", "mbh", "bv io", "nv io",
    "ltd", "limited", "llp", "plc", "inc", "llc", "corp", "corporation", "incorporated",
]  # fmt: skip
_PREFIX_FORMS = ["bv", "nv", "bvba", "vof", "cv", "commv", "cvba", "vzw", "asbl", "sa", "srl", "sprl", "sarl", "sas"]


def _terms(words: list[str]) -> list[tuple[int, list[str]]]:
    """Legal forms in cleanco's term format (as ``prepare_default_terms`` builds it): normalised
    word lists, longest first so that "gmbh & co kg" goes before "kg"."""
    parts = {tuple(re.sub(r"[.,\-]", "", w.casefold()).split()) for w in words}
    return [(len(p), list(p)) for p in sorted(parts, key=lambda p: (-len(p), p)) if p]


_SUFFIX_TERMS = _terms([t for c in _COUNTRIES for t in terms_by_country[c]] + _MISSING)
_PREFIX_TERMS = _terms(_PREFIX_FORMS)

_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ø": "o", "æ": "ae", "œ": "oe", "ł": "l"})
_CONNECTORS = {"&", "en", "and", "und", "et", "+"}

GENERIC_DOMAINS = frozenset(
    """gmail.com googlemail.com hotmail.com hotmail.nl hotmail.be hotmail.fr hotmail.de outlook.com
    outlook.be outlook.de outlook.fr live.com live.nl live.be live.fr msn.com yahoo.com yahoo.fr
    icloud.com me.com aol.com proton.me protonmail.com gmx.de gmx.net web.de t-online.de orange.fr
    wanadoo.fr free.fr ziggo.nl kpnmail.nl kpnplanet.nl planet.nl home.nl hetnet.nl xs4all.nl
    telenet.be skynet.be proximus.be btinternet.com facebook.com linkedin.com instagram.com
    twitter.com x.com google.com sites.google.com business.site""".split()
)


@dataclass(frozen=True)
class Match:
    score: float
    is_same_customer: bool
    reasons: list[str]


def _fold(text: str) -> str:
    """Lower case, umlauts spelt out, other accents dropped."""
    text = unicodedata.normalize("NFC", text or "").casefold().translate(_UMLAUTS)
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@lru_cache(maxsize=8192)
def normalize_name(name: str) -> str:
    """The comparable form of a company name: "Müller & Söhne GmbH" -> "mueller & soehne".
    Cached: the conflict check normalises the same named accounts and candidates for every
    submission, at about 0.1 ms a name (cleanco's legal-form stripping)."""
    text = _fold(name).replace("&", " & ")
    text = re.sub(r"[()\[\]/,;:]", " ", text)
    stripped = basename(text, terms=_SUFFIX_TERMS, suffix=True)
    stripped = basename(stripped, terms=_PREFIX_TERMS, suffix=False, prefix=True)
    words = _words(stripped) or _words(text)  # a name that is only a legal form keeps it
    return " ".join("&" if w in _CONNECTORS and 0 < i < len(words) - 1 else w for i, w in enumerate(words))


def _words(text: str) -> list[str]:
    text = re.sub(r"['’`.]", "", text)
    return re.sub(r"[^\w&+]+", " ", text).replace("_", " ").split()


name_key = normalize_name


def normalize_vat(value: str | None, country: str = "") -> str:
    """Upper case without spaces, dots and dashes. With ``country``, a number typed without its
    country prefix gets it (Greece's VAT prefix is EL)."""
    vat = re.sub(r"[\s.\-/]", "", value or "").upper()
    if vat and vat[0].isdigit() and country:
        vat = {"GR": "EL"}.get(country.upper(), country.upper()) + vat
    return vat


def company_digits(vat_or_number: str | None, country: str) -> str:
    """The digits that identify a company where its VAT number and register number coincide:
    BE: the 10-digit enterprise (KBO) number; FR: the 9-digit SIREN. "" elsewhere or if malformed.
    A VAT number's own prefix wins over ``country``."""
    value = normalize_vat(vat_or_number)
    if len(value) > 2 and value[:2].isalpha():
        country, value = value[:2], value[2:]
    country = (country or "").upper()
    if country == "BE" and value.isdigit() and len(value) in (9, 10):
        return value.zfill(10)
    if country == "FR":
        if len(value) == 11 and value[2:].isdigit():  # VAT: 2-character key + SIREN
            return value[2:]
        if value.isdigit() and len(value) in (9, 14):  # SIREN or SIRET
            return value[:9]
    return ""


def normalize_domain(website: str | None) -> str:
    """ "https://www.Jansen.nl:443/contact" -> "jansen.nl"; an e-mail address gives its domain;
    "" for generic e-mail, hosting and social-media domains and for anything that is not a host."""
    value = (website or "").strip().lower()
    if "@" in value and "/" not in value.split("@")[0]:
        value = value.rsplit("@", 1)[1]
    if "//" not in value:
        value = "//" + value
    try:
        host = (urlsplit(value).hostname or "").rstrip(".")
    except ValueError:
        return ""
    host = host.removeprefix("www.")
    if "." not in host or host in GENERIC_DOMAINS or any(host.endswith("." + d) for d in GENERIC_DOMAINS):
        return ""
    return host


def _country(record: Mapping) -> str:
    country = (record.get("country") or "").strip().upper()
    return "GB" if country == "UK" else country


def _vat(record: Mapping) -> str:
    return normalize_vat(record.get("vat") or record.get("vat_number"), _country(record))


def _digits(record: Mapping) -> set[str]:
    country = _country(record)
    found = {company_digits(_vat(record), country), company_digits(record.get("company_number"), country)}
    return {d for d in found if d}


def _is_typo(x: str, y: str) -> bool:
    return min(len(x), len(y)) >= TYPO_MIN_LENGTH and x[0] == y[0] and OSA.distance(x, y) <= 1


def _differing_words(x: str, y: str) -> tuple[list[str], list[str]]:
    """The words of each name that the other does not have (as multisets)."""
    left, right = x.split(), y.split()
    for word in list(left):
        if word in right:
            left.remove(word)
            right.remove(word)
    return left, right


def _words_are_typos(left: list[str], right: list[str]) -> bool:
    if len(left) != len(right) or len(left) > 3:
        return False
    return any(all(_is_typo(x, y) for x, y in zip(left, perm, strict=True)) for perm in permutations(right))


def _compare_names(x: str, y: str) -> tuple[str, float, float, str]:
    """(kind, similarity in %, score, reason); kind is "" when the names do not match."""
    if not (x and y):
        return "", 0.0, 0.0, ""
    similarity = max(fuzz.ratio(x, y), fuzz.token_sort_ratio(x, y))
    if x == y:
        return "equal", 100.0, 0.9, f"Names match after normalisation: '{x}'"
    if sorted(x.split()) == sorted(y.split()):
        return "order", 100.0, 0.88, f"Same name in a different word order: '{x}' / '{y}'"
    if x.replace(" ", "") == y.replace(" ", ""):
        return "spacing", 100.0, 0.88, f"Same name apart from spacing: '{x}' / '{y}'"
    left, right = _differing_words(x, y)
    if similarity >= NAME_THRESHOLD and _words_are_typos(left, right):
        return "typo", similarity, 0.8 + (similarity - NAME_THRESHOLD) / 100, f"Similar names ({similarity:.0f}%)"
    reason = ""
    if similarity >= 75 and left and right:
        reason = f"Similar names ({similarity:.0f}%) but different words: {', '.join(left)} / {', '.join(right)}"
    return "", similarity, 0.0, reason


def names_may_match(x: str, y: str) -> bool:
    """A cheap first test on two normalised names (``name_key``): False only where ``match`` can
    never call them the same name (not equal, not the same words or letters, under 90 % similar).
    The conflict check runs the full ``match`` on the rest and on every key hit."""
    if not (x and y):
        return False
    if x == y or x.replace(" ", "") == y.replace(" ", ""):
        return True
    return fuzz.ratio(x, y) >= NAME_THRESHOLD or fuzz.token_sort_ratio(x, y) >= NAME_THRESHOLD


@dataclass(frozen=True)
class Keys:
    """What ``match`` compares, normalised once: a record compared with many (the named accounts at
    each conflict check) computes its keys once and skips ``match`` where ``may_match`` says no."""

    country: str
    vat: str
    company_number: str
    digits: frozenset[str]
    domain: str
    name: str


def keys(record: Mapping) -> Keys:
    return Keys(
        country=_country(record),
        vat=_vat(record),
        company_number=normalize_vat(record.get("company_number")),
        digits=frozenset(_digits(record)),
        domain=normalize_domain(record.get("website")),
        name=normalize_name(record.get("name") or ""),
    )


def may_match(a: Keys, b: Keys) -> bool:
    """False only where ``match(a, b).is_same_customer`` is False: the rules above on the keys, with
    ``names_may_match`` standing in for the name comparison. Cheap enough to run over every named
    account; ``match`` decides (and gives the score and the reasons) for the rest."""
    same_country = bool(a.country) and a.country == b.country
    return bool(
        (a.vat and a.vat == b.vat)
        or (a.company_number and a.company_number == b.company_number and same_country)
        or (a.digits & b.digits)
        or (a.domain and a.domain == b.domain)
        or (same_country and names_may_match(a.name, b.name))
    )


def match(a: Mapping, b: Mapping) -> Match:
    """Compare two customer records; see the module docstring for the rules."""
    # Work on a fixed order of the two records so that match(a, b) == match(b, a), reasons included.
    a, b = sorted((a, b), key=lambda r: tuple(str(r.get(k) or "") for k in sorted(r)) + (str(sorted(r)),))
    reasons: list[str] = []
    score = 0.0
    ca, cb = _country(a), _country(b)
    same_country = bool(ca) and ca == cb

    vat_a, vat_b = _vat(a), _vat(b)
    number_a = normalize_vat(a.get("company_number"))
    number_b = normalize_vat(b.get("company_number"))
    common_digits = sorted(_digits(a) & _digits(b))
    domain_a, domain_b = normalize_domain(a.get("website")), normalize_domain(b.get("website"))

    if vat_a and vat_a == vat_b:
        score = 1.0
        reasons.append(f"Same VAT number ({vat_a})")
    if number_a and number_a == number_b and same_country:
        score = 1.0
        reasons.append(f"Same company number ({number_a})")
    elif common_digits and not (vat_a and vat_a == vat_b):
        score = 1.0
        reasons.append(f"Same company number ({common_digits[0]}) in the VAT and company numbers")
    if domain_a and domain_a == domain_b:
        score = max(score, 0.95)
        reasons.append(f"Same website domain ({domain_a})")

    name_a, name_b = normalize_name(a.get("name") or ""), normalize_name(b.get("name") or "")
    kind, similarity, name_score, name_reason = _compare_names(name_a, name_b)
    same_city = same_country and _fold(a.get("city") or "").strip() == _fold(b.get("city") or "").strip() != ""
    postcode_a = re.sub(r"[\s\-]", "", a.get("postcode") or "").upper()
    postcode_b = re.sub(r"[\s\-]", "", b.get("postcode") or "").upper()
    same_postcode = same_country and postcode_a and postcode_a == postcode_b
    different_vats = bool(vat_a and vat_b and vat_a != vat_b)

    if kind and same_country:
        if kind == "typo" and same_city:
            name_reason += " in the same city"
        reasons.append(name_reason)
        if different_vats and score == 0.0:
            name_score -= 0.1
        score = max(score, name_score)
    elif kind:
        reasons.append(f"Same or similar name, but not in the same country ({ca or '?'}, {cb or '?'})")
    elif name_reason:
        reasons.append(name_reason)

    is_same = score > 0.0
    if not is_same:
        score = 0.6 * similarity / 100
    if same_city:
        score += 0.05
        if not name_reason.endswith("in the same city"):
            reasons.append(f"Same city ({(a.get('city') or '').strip()})")
    if same_postcode:
        score += 0.05
        reasons.append(f"Same postcode ({postcode_a})")
    if different_vats:
        reasons.append(f"Different VAT numbers ({', '.join(sorted((vat_a, vat_b)))})")
    score = min(score, 1.0) if is_same else min(score, MATCH_SCORE - 0.01)
    return Match(score=round(score, 3), is_same_customer=is_same, reasons=reasons)
