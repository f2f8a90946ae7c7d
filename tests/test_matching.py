"""Customer matching for channel-conflict detection: pure functions, no database."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deals.matching import (
    Match,
    company_digits,
    keys,
    match,
    may_match,
    name_key,
    names_may_match,
    normalize_domain,
    normalize_name,
    normalize_vat,
)


def rec(name, country="NL", city="", **extra):
    return {"name": name, "city": city, "country": country, **extra}


SAME = [
    # required examples
    ("required: legal form and case", rec("Bakkerij Jansen B.V."), rec("bakkerij jansen bv")),
    ("required: legal form dropped", rec("ACME Nederland B.V."), rec("Acme Nederland")),
    ("required: umlaut", rec("Müller Maschinenbau GmbH", "DE"), rec("Mueller Maschinenbau", "DE")),
    # names
    ("ß = ss", rec("Großhandel Weiß GmbH", "DE"), rec("Grosshandel Weiss", "DE")),
    ("accents", rec("Boulangerie Hélène SARL", "FR"), rec("Boulangerie Helene", "FR")),
    ("umlaut without e is a typo", rec("Müller Maschinenbau", "DE"), rec("Muller Maschinenbau", "DE")),
    ("& = en", rec("Jansen & Zonen B.V."), rec("Jansen en Zonen")),
    ("und = and = &", rec("Schmidt und Partner GmbH", "DE"), rec("Schmidt & Partner", "DE")),
    ("et = &", rec("Dupont et Fils SAS", "FR"), rec("Dupont & Fils", "FR")),
    ("word order", rec("Jansen Bakkerij"), rec("Bakkerij Jansen")),
    ("swapped letters", rec("Bakkerij Jansen"), rec("Bakkerij Jansne")),
    ("one letter missing", rec("Installatiebedrijf De Vries", city="Utrecht"), rec("Instalatiebedrijf De Vries")),
    ("spacing", rec("Van der Berg Techniek"), rec("Vanderberg Techniek")),
    ("punctuation", rec("A.B.C. Trading Ltd", "GB"), rec("ABC Trading Limited", "GB")),
    ("legal form only: BV vs NV", rec("Jansen Transport B.V."), rec("Jansen Transport N.V.")),
    ("legal form only: VOF", rec("Bouwbedrijf Smit V.O.F."), rec("Bouwbedrijf Smit vof")),
    ("legal form only: BVBA prefix", rec("BVBA Peeters Elektro", "BE"), rec("Peeters Elektro BV BA", "BE")),
    ("legal form only: SRL/SPRL", rec("Dubois Chauffage SRL", "BE"), rec("Dubois Chauffage SPRL", "BE")),
    ("legal form only: GmbH & Co. KG", rec("Becker Logistik GmbH & Co. KG", "DE"), rec("Becker Logistik KG", "DE")),
    ("legal form only: e.K. / UG", rec("Kaufhaus Neumann e.K.", "DE"), rec("Kaufhaus Neumann UG", "DE")),
    ("legal form only: PLC / LLP", rec("Harrison Engineering PLC", "GB"), rec("Harrison Engineering LLP", "GB")),
    ("legal form only: SARL / EURL", rec("Garage Martin SARL", "FR"), rec("Garage Martin EURL", "FR")),
    (
        "different city does not block a name match",
        rec("Bakkerij Jansen", city="Utrecht"),
        rec("Bakkerij Jansen", city="Zeist"),
    ),
    # numbers
    ("same VAT, other spelling", rec("Foo", vat="NL 8528.65.263.B01"), rec("Bar", vat="nl852865263b01")),
    ("same VAT across countries", rec("Jansen", "NL", vat="BE0123456789"), rec("Other", "BE", vat="BE 0123.456.789")),
    ("VAT without prefix", rec("Foo", "DE", vat="123456789"), rec("Bar", "DE", vat="DE123456789")),
    (
        "BE VAT = KBO number",
        rec("Peeters", "BE", vat="BE0123456789"),
        rec("Other", "BE", company_number="0123.456.789"),
    ),
    ("BE old 9-digit KBO", rec("Peeters", "BE", vat="BE0412345678"), rec("Other", "BE", company_number="412.345.678")),
    (
        "FR VAT contains SIREN",
        rec("Foo", "FR", vat="FR40303265045"),
        rec("Bar", "FR", company_number="303 265 045 00012"),
    ),
    ("same KvK number", rec("Foo", company_number="12345678"), rec("Bar", company_number="1234 5678")),
    # domains
    ("domain: scheme and www", rec("Foo", website="https://www.jansen.nl"), rec("Bar", website="jansen.nl")),
    (
        "domain: path, port, case",
        rec("Foo", website="http://WWW.Jansen.NL:8080/contact"),
        rec("Bar", website="jansen.nl/"),
    ),
    ("domain across countries", rec("Foo", "NL", website="jansen.eu"), rec("Bar", "DE", website="www.jansen.eu")),
    ("e-mail address as website", rec("Foo", website="info@jansen.nl"), rec("Bar", website="www.jansen.nl")),
]

NOT_SAME = [
    ("required: different trade", rec("Bakkerij Jansen B.V."), rec("Slagerij Jansen B.V.")),
    (
        "required: different trade, long shared part",
        rec("Bakkerij Jansen en Zonen Amsterdam"),
        rec("Slagerij Jansen en Zonen Amsterdam"),
    ),
    ("required: same name, NL vs DE", rec("Jansen Transport B.V.", "NL"), rec("Jansen Transport GmbH", "DE")),
    ("same name, BE vs FR", rec("Dupont Chauffage SA", "BE"), rec("Dupont Chauffage SA", "FR")),
    ("same name, GB vs NL", rec("Harrison Ltd", "GB"), rec("Harrison B.V.", "NL")),
    ("country missing", rec("Bakkerij Jansen", ""), rec("Bakkerij Jansen", "NL")),
    ("short names", rec("ABC BV"), rec("ABD BV")),
    ("short words are never typos", rec("Bakkerij Smit"), rec("Bakkerij Smid")),
    ("first letter differs", rec("Bakkerij Jansen"), rec("Bakkerij Hansen")),
    ("extra word", rec("ACME Nederland"), rec("ACME Belgie")),
    ("extra word is not a typo", rec("Acme"), rec("Acme Nederland")),
    ("different names", rec("Van Dijk Installaties", city="Utrecht"), rec("De Vries Installaties", city="Utrecht")),
    ("generic e-mail domain", rec("Foo", website="gmail.com"), rec("Bar", website="https://gmail.com")),
    ("generic e-mail addresses", rec("Foo", website="info@hotmail.com"), rec("Bar", website="sales@hotmail.com")),
    ("ISP domains", rec("Foo", website="ziggo.nl"), rec("Bar", website="www.ziggo.nl")),
    ("social media page", rec("Foo", website="https://www.facebook.com/foo"), rec("Bar", website="facebook.com/bar")),
    ("NL VAT is not the KvK number", rec("Foo", vat="NL123456789B01"), rec("Bar", company_number="123456789")),
    ("different VAT numbers", rec("Foo", vat="NL123456789B01"), rec("Bar", vat="NL123456789B02")),
    (
        "KvK number in another country",
        rec("Foo", "NL", company_number="12345678"),
        rec("Bar", "DE", company_number="12345678"),
    ),
    (
        "empty optional fields",
        rec("Foo", website="", vat="", company_number="", postcode=""),
        rec("Bar", website=None, vat=None),
    ),
    ("empty names", rec(""), rec("")),
]


@pytest.mark.parametrize(("label", "a", "b"), SAME, ids=[c[0] for c in SAME])
def test_same_customer(label, a, b):
    result = match(a, b)
    assert result.is_same_customer, result
    assert result.reasons
    assert 0.7 <= result.score <= 1.0


@pytest.mark.parametrize(("label", "a", "b"), NOT_SAME, ids=[c[0] for c in NOT_SAME])
def test_not_same_customer(label, a, b):
    result = match(a, b)
    assert not result.is_same_customer, result
    assert 0.0 <= result.score < 0.7


@pytest.mark.parametrize(("label", "a", "b"), SAME + NOT_SAME, ids=[c[0] for c in SAME + NOT_SAME])
def test_match_is_symmetric(label, a, b):
    assert match(a, b) == match(b, a)


def _name_only(record):
    return {"name": record["name"], "country": record.get("country"), "city": record.get("city", "")}


@pytest.mark.parametrize(("label", "a", "b"), SAME, ids=[c[0] for c in SAME])
def test_the_cheap_name_test_keeps_every_name_match(label, a, b):
    """The conflict check skips match() for candidates that fail names_may_match (and share no key):
    every pair match() accepts on the names alone must pass it."""
    if match(_name_only(a), _name_only(b)).is_same_customer:
        assert names_may_match(name_key(a["name"]), name_key(b["name"]))


WORDS = ["bakkerij", "jansen", "van", "der", "berg", "installatie", "techniek", "müller", "söhne", "de", "vries", "&"]
FORMS = ["", " B.V.", " bv", " GmbH", " NV", " VOF", " Ltd"]


@settings(deadline=None)
@given(
    words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=4),
    edit=st.sampled_from(["typo", "swap", "join", "case", "none"]),
    at=st.integers(min_value=0, max_value=50),
    letter=st.sampled_from("aeiknrst"),
    forms=st.tuples(st.sampled_from(FORMS), st.sampled_from(FORMS)),
)
def test_names_may_match_never_drops_what_match_accepts(words, edit, at, letter, forms):
    name = " ".join(words)
    other = name
    if edit == "typo":
        i = at % len(name)
        other = name[:i] + letter + name[i + 1 :]
    elif edit == "swap" and len(words) > 1:
        other = " ".join(words[1:] + words[:1])
    elif edit == "join" and len(words) > 1:
        other = "".join(words[:2]) + " " + " ".join(words[2:])
    elif edit == "case":
        other = name.upper()
    a, b = rec(name + forms[0]), rec(other + forms[1])
    if match(a, b).is_same_customer:
        assert names_may_match(name_key(a["name"]), name_key(b["name"]))


@pytest.mark.parametrize(("label", "a", "b"), SAME + NOT_SAME, ids=[c[0] for c in SAME + NOT_SAME])
def test_the_cheap_record_test_keeps_every_match(label, a, b):
    """The conflict check runs match() on a named account only if may_match() on their keys says
    it may be the customer: it must say so for every pair match() accepts, either way round."""
    if match(a, b).is_same_customer:
        assert may_match(keys(a), keys(b)) and may_match(keys(b), keys(a))


@settings(deadline=None)
@given(
    names=st.tuples(st.sampled_from(WORDS), st.sampled_from(WORDS)),
    countries=st.tuples(st.sampled_from(["NL", "BE", "FR", "DE", "", "uk", "GB"]), st.sampled_from(["NL", "BE", "GB"])),
    vats=st.tuples(
        st.sampled_from(["", "NL851234567B01", "851234567B01", "be 0123.456.789", "FR12123456789"]),
        st.sampled_from(["", "nl 8512.34.567.b01", "BE0123456789", "0123456789"]),
    ),
    numbers=st.tuples(
        st.sampled_from(["", "0123.456.789", "123456789", "12345678"]), st.sampled_from(["", "123456789", "12345678"])
    ),
    sites=st.tuples(
        st.sampled_from(["", "www.jansen.nl", "gmail.com", "https://jansen.nl/x"]), st.sampled_from(["", "jansen.nl"])
    ),
)
def test_may_match_never_drops_what_match_accepts(names, countries, vats, numbers, sites):
    a = {"name": names[0], "country": countries[0], "vat": vats[0], "company_number": numbers[0], "website": sites[0]}
    b = {"name": names[1], "country": countries[1], "vat": vats[1], "company_number": numbers[1], "website": sites[1]}
    if match(a, b).is_same_customer:
        assert may_match(keys(a), keys(b))


def test_may_match_refuses_a_different_customer():
    assert not may_match(keys(rec("Bakkerij Jansen")), keys(rec("Slagerij de Vries")))
    assert not may_match(keys(rec("Bakkerij Jansen")), keys(rec("Bakkerij Jansen", country="DE")))  # names: one country
    assert may_match(keys(rec("Jansen", vat="NL851234567B01")), keys(rec("Other", country="BE", vat="nl851234567b01")))


def test_names_may_match_refuses_different_names():
    assert not names_may_match(name_key("Bakkerij Jansen"), name_key("Slagerij de Vries"))
    assert not names_may_match("", "jansen")


def test_table_is_large_enough():
    assert len(SAME) + len(NOT_SAME) >= 40
    countries = {r["country"] for _, a, b in SAME + NOT_SAME for r in (a, b)}
    assert {"NL", "BE", "DE", "FR", "GB"} <= countries


def test_reasons_are_plain_language():
    assert (
        "Same VAT number (BE0123456789)" in match(rec("A", vat="BE0123456789"), rec("B", vat="be 0123.456.789")).reasons
    )
    assert (
        "Same website domain (jansen.nl)"
        in match(rec("A", website="www.jansen.nl"), rec("B", website="jansen.nl")).reasons
    )
    same_name = match(rec("Bakkerij Jansen B.V."), rec("bakkerij jansen bv"))
    assert same_name.reasons == ["Names match after normalisation: 'bakkerij jansen'"]
    typo = match(rec("Bakkerij Jansen", city="Utrecht"), rec("Bakkerij Jansne", city="utrecht"))
    assert typo.reasons[0].startswith("Similar names (93%) in the same city")


def test_city_and_postcode_raise_the_score():
    plain = match(rec("Bakkerij Jansen"), rec("Bakkerij Jansne"))
    located = match(
        rec("Bakkerij Jansen", city="Utrecht", postcode="3511 AB"),
        rec("Bakkerij Jansne", city="Utrecht", postcode="3511AB"),
    )
    assert plain.is_same_customer and located.is_same_customer
    assert located.score > plain.score
    assert "Same postcode (3511AB)" in located.reasons


def test_strong_identifiers_outrank_names():
    assert match(rec("Foo", vat="NL852865263B01"), rec("Bar", vat="NL852865263B01")).score == 1.0
    assert match(rec("Bakkerij Jansen"), rec("Bakkerij Jansen")).score < 1.0


def test_name_match_with_different_vat_numbers_is_flagged():
    result = match(rec("Jansen B.V.", vat="NL123456789B01"), rec("Jansen", vat="NL987654321B01"))
    assert result.is_same_customer
    assert "Different VAT numbers (NL123456789B01, NL987654321B01)" in result.reasons
    assert result.score < match(rec("Jansen B.V."), rec("Jansen")).score


def test_match_is_a_frozen_dataclass():
    result = match(rec("A"), rec("A"))
    assert isinstance(result, Match)
    with pytest.raises(AttributeError):
        result.score = 0.5


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Bakkerij Jansen B.V.", "bakkerij jansen"),
        ("Müller & Söhne GmbH & Co. KG", "mueller & soehne"),
        ("Straße und Weg GmbH", "strasse & weg"),
        ("NV Peeters", "peeters"),
        ("Neu UG (haftungsbeschränkt)", "neu"),
        ("Crédit Agricole S.A.", "credit agricole"),
        ("Jansen en Zonen V.O.F.", "jansen & zonen"),
        ("En Route B.V.", "en route"),
        ("B.V.", "bv"),
        ("", ""),
    ],
)
def test_normalize_name(name, expected):
    assert normalize_name(name) == expected
    assert name_key(name) == expected


def test_normalize_vat():
    assert normalize_vat(" be 0123.456-789 ") == "BE0123456789"
    assert normalize_vat(None) == ""
    assert normalize_vat("123456789", "DE") == "DE123456789"


@pytest.mark.parametrize(
    ("value", "country", "expected"),
    [
        ("BE0123456789", "BE", "0123456789"),
        ("0123.456.789", "BE", "0123456789"),
        ("123.456.789", "BE", "0123456789"),
        ("BE0123456789", "NL", "0123456789"),  # the VAT prefix says Belgian
        ("NL123456789B01", "NL", ""),
        ("12345678", "NL", ""),
        ("DE123456789", "DE", ""),
        ("FR40303265045", "FR", "303265045"),
        ("30326504500012", "FR", "303265045"),
        ("", "BE", ""),
        ("BE12", "BE", ""),
    ],
)
def test_company_digits(value, country, expected):
    assert company_digits(value, country) == expected


@pytest.mark.parametrize(
    ("website", "expected"),
    [
        ("https://www.Jansen.nl:443/contact?x=1", "jansen.nl"),
        ("jansen.nl", "jansen.nl"),
        ("info@jansen.nl", "jansen.nl"),
        ("shop.jansen.nl", "shop.jansen.nl"),
        ("gmail.com", ""),
        ("https://www.linkedin.com/company/jansen", ""),
        ("kpnmail.nl", ""),
        ("live.nl", ""),
        ("outlook.com", ""),
        ("n/a", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_domain(website, expected):
    assert normalize_domain(website) == expected
