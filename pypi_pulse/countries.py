"""Country codes: ISO 3166-1 alpha-2 as BigQuery logs them; null, empty or malformed becomes `ZZ`.

A well-formed code (two ASCII capital letters) is kept exactly as logged, known to pycountry or not: PyPI's real
data holds codes outside ISO's assigned list, such as `XK` (Kosovo, a user-assigned code), and folding them into
`ZZ` would lose real downloads' countries. Lower-case or longer values are not what BigQuery logs: they are
counted as unknown (`ZZ`), and the dataflow counts how many it folded (`country_unknown`).
"""

from __future__ import annotations

from functools import cache
from typing import Optional

import pycountry

UNKNOWN = "ZZ"
ALPHA2 = frozenset(c.alpha_2 for c in pycountry.countries)
# Codes in real use that pycountry lacks: alpha-2 -> (alpha-3 as Plotly's choropleth locations take it, name)
EXTRA = {"XK": ("XKX", "Kosovo")}
ALPHA2_OF_ALPHA3 = {**{c.alpha_3: c.alpha_2 for c in pycountry.countries}, **{a3: a2 for a2, (a3, _) in EXTRA.items()}}


def well_formed(code: object) -> bool:
    return type(code) is str and len(code) == 2 and code.isascii() and code.isalpha() and code.isupper()


def country_or_unknown(code: object) -> str:
    """The code an event is counted under."""
    return code if isinstance(code, str) and well_formed(code) else UNKNOWN


@cache
def alpha3(code: str) -> Optional[str]:
    """ISO alpha-3 for Plotly's choropleths; None for `ZZ` and codes neither pycountry nor `EXTRA` knows."""
    if code in EXTRA:
        return EXTRA[code][0]
    c = pycountry.countries.get(alpha_2=code)
    return c.alpha_3 if c else None


@cache
def name(code: str) -> str:
    if code in EXTRA:
        return EXTRA[code][1]
    c = pycountry.countries.get(alpha_2=code)
    return c.name if c else ("Unknown" if code == UNKNOWN else code)
