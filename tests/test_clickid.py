"""Click-id parsing over the URL shapes that reach us in landing_site and session_entry."""
from __future__ import annotations

import json

import pytest

from adapters.clickid import click_id_from_attributes, click_id_from_params, click_id_from_url
from tests.conftest import fixture_bytes

CLICK = ("click_id",)

URL_CASES = [
    # (case, url, params, expected)
    ("absolute", "https://shop.example/products/a?click_id=ABC123", CLICK, "ABC123"),
    ("absolute with other params", "http://x/y?a=b&click_id=ABC&utm_source=kwai", CLICK, "ABC"),
    ("relative path", "/?click_id=ABC", CLICK, "ABC"),
    ("relative query only", "?click_id=ABC", CLICK, "ABC"),
    ("bare query string", "utm_source=kwai&click_id=ABC", CLICK, "ABC"),
    ("percent-encoded once", "/?click_id=5u%5FvMxm%2Babc%3D", CLICK, "5u_vMxm+abc="),
    ("double-encoded stays encoded once", "/?click_id=a%252Bb", CLICK, "a%2Bb"),
    ("literal plus kept", "/?click_id=ab+cd/ef==", CLICK, "ab+cd/ef=="),
    ("slash and equals in value", "/?click_id=x/y=z=", CLICK, "x/y=z="),
    ("repeated: last non-empty", "/?click_id=first&click_id=second", CLICK, "second"),
    ("repeated: last is empty", "/?click_id=first&click_id=", CLICK, "first"),
    ("empty value", "/?click_id=", CLICK, None),
    ("blank value", "/?click_id=%20%20", CLICK, None),
    ("name without value", "/?click_id&a=b", CLICK, None),
    ("other params only", "/collections/x?utm_source=kwai&utm_medium=cpc", CLICK, None),
    ("no query", "https://shop.example/", CLICK, None),
    ("prefix of another name is not it", "/?my_click_id=NO&click_idx=NO", CLICK, None),
    ("fragment", "https://shop.example/#click_id=FRAG", CLICK, "FRAG"),
    ("fragment route", "https://shop.example/#/product?x=1&click_id=ROUTE", CLICK, "ROUTE"),
    ("query wins over fragment", "/?click_id=Q#click_id=F", CLICK, "Q"),
    ("plain anchor", "/?a=1#reviews", CLICK, None),
    ("redirect param", "/login?redirect=https%3A%2F%2Fshop%2F%3Fclick_id%3DABC", CLICK, "ABC"),
    ("redirect keeps inner encoding", "/r?url=https%3A%2F%2Fs%2F%3Fclick_id%3Da%252Bb", CLICK, "a+b"),
    ("u= redirect", "/out?u=%2Fp%3Fclick_id%3DU1", CLICK, "U1"),
    ("next= redirect", "/account/login?next=/cart?click_id=N1", CLICK, "N1"),
    ("return_to redirect", "/a?return_to=%2Fb%23click_id%3DR1", CLICK, "R1"),
    ("redirect_to redirect", "/a?redirect_to=https%3A%2F%2Fx%2F%3Fclick_id%3DRT", CLICK, "RT"),
    ("direct wins over redirect", "/?redirect=%2F%3Fclick_id%3DINNER&click_id=OUTER", CLICK, "OUTER"),
    ("redirect without URL value", "/?next=checkout&a=b", CLICK, None),
    ("only one level deep", "/?u=%2F%3Fu%3D%252F%253Fclick_id%253DDEEP", CLICK, None),
    ("custom param name", "/?kwai_cid=K9&click_id=DEFAULT", ("kwai_cid",), "K9"),
    ("first configured name wins", "/?b=B&a=A", ("a", "b"), "A"),
    ("falls back to second name", "/?b=B", ("a", "b"), "B"),
    ("encoded key", "/?click%5Fid=ENC", CLICK, "ENC"),
    ("surrounding spaces", "  https://s/?click_id=SP  ", CLICK, "SP"),
    ("none", None, CLICK, None),
    ("empty string", "", CLICK, None),
    ("broken escapes survive", "/?click_id=%zz%", CLICK, "%zz%"),
    ("utf-8 escape", "/?click_id=caf%C3%A9", CLICK, "café"),
]


@pytest.mark.parametrize(("url", "params", "expected"), [c[1:] for c in URL_CASES],
                         ids=[c[0] for c in URL_CASES])
def test_click_id_from_url(url, params, expected):
    assert click_id_from_url(url, params) == expected


def test_real_landing_urls_keep_literal_plus():
    """The SHOPLINE attribution sample's landing URLs: UTM values hold a literal `+`."""
    data = json.loads(fixture_bytes("shopline/shopline_order_attribution_info_rest.json"))
    first = data["data"][0]["first_interaction"]["first_landing_page_url"]
    last = data["data"][0]["last_interaction"]["last_landing_page"]
    assert click_id_from_url(first, CLICK) is None
    assert click_id_from_url(first, ("utm_term",)) == "women+dress"
    assert click_id_from_url(last, ("utm_term",)) == "floral+midi+dress"
    assert click_id_from_url(data["data"][1]["first_interaction"]["first_landing_page_url"], CLICK) is None


ATTRIBUTE_CASES = [
    ("note_attributes", [{"name": "gift", "value": "no"}, {"name": "kwai_click_id", "value": " A+1 "}], "A+1"),
    ("hidden underscore name", [{"name": "_kwai_click_id", "value": "H1"}], "H1"),
    ("Shopify's private name", [{"name": "__kwai_click_id", "value": "P1"}], "P1"),
    # the snippet now writes a hidden name: on a cart that also has the first version's
    # plain name, the hidden one is the newer click
    ("hidden name wins over plain", [{"name": "kwai_click_id", "value": "P"}, {"name": "_kwai_click_id", "value": "H"}], "H"),
    ("private name wins over both", [{"name": "_kwai_click_id", "value": "H"}, {"name": "__kwai_click_id", "value": "S"},
                                     {"name": "kwai_click_id", "value": "P"}], "S"),
    ("last non-empty wins", [{"name": "kwai_click_id", "value": "old"}, {"name": "kwai_click_id", "value": "new"}], "new"),
    ("empty value ignored", [{"name": "kwai_click_id", "value": ""}], None),
    ("value not decoded", [{"name": "kwai_click_id", "value": "a%2Bb"}], "a%2Bb"),
    ("attributes dict", {"kwai_click_id": "D1", "other": "x"}, "D1"),
    ("woocommerce meta shape", [{"id": 1, "key": "kwai_click_id", "value": "M1"}], "M1"),
    ("non-string value", [{"name": "kwai_click_id", "value": {"x": 1}}], None),
    ("garbage", "kwai_click_id=abc", None),
    ("none", None, None),
]


@pytest.mark.parametrize(("attributes", "expected"), [c[1:] for c in ATTRIBUTE_CASES],
                         ids=[c[0] for c in ATTRIBUTE_CASES])
def test_click_id_from_attributes(attributes, expected):
    assert click_id_from_attributes(attributes) == expected


@pytest.mark.parametrize(("mapping", "params", "expected"), [
    ({"click_id": "P1"}, CLICK, "P1"),
    ({"click_id": ["", "P2", " "]}, CLICK, "P2"),
    ({"click_id": ""}, CLICK, None),
    ({"cid": "C"}, ("click_id", "cid"), "C"),
    ({}, CLICK, None),
])
def test_click_id_from_params(mapping, params, expected):
    assert click_id_from_params(mapping, params) == expected


STRIPPED = "https://woo.example/?utm_source=kwai&click_id="
DOUBT_CASES = [
    # (why, click id as read, the kept URL, doubted)
    ("a decoded slash shows nothing was stripped", "9X8YpQ9/Qt2gZx==", STRIPPED + "9X8YpQ9/Qt2gZx==", False),
    # an underscore proves nothing: many encoders leave it, and the escaped rest was stripped
    ("an underscore alone", "q_6k5rENNPu9hOxaaNHn4g", STRIPPED + "q_6k5rENNPu9hOxaaNHn4g", True),
    ("escapes removed: looks whole, may not be", "9X8YpQ9Qt2gZx", STRIPPED + "9X8YpQ9Qt2gZx", True),
    ("a space elsewhere shows the URL was decoded", "Lw2HvYVkoj1MyzQwwNX4dg",
     "https://woo.example/?utm_campaign=Black Friday&click_id=Lw2HvYVkoj1MyzQwwNX4dg", False),
    ("no sign either way", "Lw2HvYVkoj1MyzQwwNX4dg", STRIPPED + "Lw2HvYVkoj1MyzQwwNX4dg", True),
    ("a decoded plus, a length base64 has", "q6k5rENNPu9hOxaaNHn4g+", STRIPPED + "q6k5rENNPu9hOxaaNHn4g+", False),
    ("one character lost: 21 long", "q6k5rENNPu9hOxaaNHn4g", "https://x/?a=b c&click_id=q6k5rENNPu9hOxaaNHn4g", True),
    ("padding that does not fit the length", "AbCd/e=", STRIPPED + "AbCd/e=", True),
    ("padding that fits", "AbCd/e==", STRIPPED + "AbCd/e==", False),
    ("a character no click id has", "Ab.cd/ef", STRIPPED + "Ab.cd/ef", True),
]


@pytest.mark.parametrize(("click_id", "url", "doubted"), [c[1:] for c in DOUBT_CASES], ids=[c[0] for c in DOUBT_CASES])
def test_a_click_id_from_a_stripped_url_is_trusted_only_with_proof(click_id, url, doubted):
    from adapters.clickid import stripped_click_doubt

    assert click_id_from_url(url, CLICK) == click_id
    doubt = stripped_click_doubt(click_id, url)
    assert (doubt is not None) == doubted, doubt
