"""Country codes: ISO 3166-1 alpha-2 as BigQuery logs them; null or unknown becomes `ZZ`."""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import pycountry

UNKNOWN = "ZZ"
ALPHA2 = frozenset(c.alpha_2 for c in pycountry.countries)


@lru_cache(maxsize=None)
def alpha3(code: str) -> Optional[str]:
    """ISO alpha-3 for Plotly's choropleths; None for `ZZ` and codes pycountry does not know."""
    c = pycountry.countries.get(alpha_2=code)
    return c.alpha_3 if c else None


@lru_cache(maxsize=None)
def name(code: str) -> str:
    c = pycountry.countries.get(alpha_2=code)
    return c.name if c else ("Unknown" if code == UNKNOWN else code)
