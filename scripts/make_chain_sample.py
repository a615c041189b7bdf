"""Build the synthetic industry-chain tables of the sample (``sample_tiles/chain/``) and ``case_chain.toml``.

``scripts/make_sample_tiles.py`` calls :func:`build` after writing the
declarations and puts :data:`README_SECTION` into ``sample_tiles/README.md``;
run alone, this script rewrites only ``chain/`` and ``case_chain.toml``.

Synthetic partners of the sample's synthetic borrowers: an input shop
(``SHOP-FQ-01``, ``SHOP-YY-02``), a machinery cooperative (``COOP-YJ-01``,
its table GBK-encoded with Chinese crop and service names, as a county
cooperative's export would be) and a grain buyer (``GRAIN-XX-01``, which
knows its sellers by its own customer IDs, hence ``customer_map.csv``).
Quantities are derived from ``sample_tiles/declarations.csv`` with the norms
of ``seeds/chain_norms.csv``, so the planted cases stay planted if the
declarations are rebuilt. The planted cases are listed in
``sample_tiles/chain/planted_cases.csv`` and ``sample_tiles/README.md``.

Usage: ``python scripts/make_chain_sample.py`` (deterministic: same bytes every run).
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing agricredit

from agricredit.chain import load_norms  # noqa: E402
from agricredit.outputs import atomic_path  # noqa: E402

CASE = """# The bundled sample with the industry-chain tables (issue 15):
# `agricredit assess sample_tiles/case_chain.toml`. Paths are relative to this file.
# Built by scripts/make_chain_sample.py.
[inputs]
plots = "plots.geojson"
tiles = ["season/manifest.csv"]
registry = "registry.csv"
declarations = "declarations.csv"
borrowers = "borrowers.csv"
input_purchases = "chain/input_purchases.csv"
machinery = "chain/machinery.csv"
sales = "chain/sales.csv"
customer_map = "chain/customer_map.csv"

[options]
start = "2023-01-01"
end = "2023-12-31"
"""


README_SECTION = """## Industry-chain tables (planted cases: `chain/planted_cases.csv`)

`chain/` and `case_chain.toml` (the sample case plus these tables) are built by
`scripts/make_chain_sample.py` from `declarations.csv` and
`seeds/chain_norms.csv`. Synthetic partners: input shops `SHOP-FQ-01`,
`SHOP-YY-02`; machinery cooperative `COOP-YJ-01` (`chain/machinery.csv` is
GBK-encoded, Chinese crop, service and unit names); grain buyer `GRAIN-XX-01`,
whose `chain/sales.csv` names its own customer IDs (`chain/customer_map.csv`).
`agricredit assess sample_tiles/case_chain.toml -o out` also exits with code 3
(the two invalid plots); borrowers without chain rows get the same decisions
as in `case.toml`.

| case | plot_id | borrower_id | how it is planted | expected code | borrower status |
|---|---|---|---|---|---|
| inputs_below | P0126 | B046 | maize seed for a fifth of the declared 146.16 mu (73.1 kg at 2.5 kg/mu) | INPUTS_BELOW_DECLARED | REVIEW |
| harvest_other_crop | P0232 | B085 | a soybean harvest of 4.0509 ha (60.76 mu) on a plot declared maize | CHAIN_OTHER_CROP | REVIEW |
| harvest_other_crop | P0251 | B091 | a wheat harvest on the planted crop-mismatch plot (declared maize, simulated wheat): supports CROP_MISMATCH | CHAIN_OTHER_CROP | REVIEW |
| sales_history | P0214 | B076 | maize sold in 2020 (70 t), 2021 (134,000 斤) and 2022 (72,500 kg): about 250 kg per mu, limit 91,500 instead of 159,200 CNY | SALES_BELOW_EXPECTED_YIELD | APPROVE |
| corroboration | P0231 | B083 | the planted cloudy wheat plot: wheat seed for its declared area (455.8 斤 at 10 kg/mu) and its harvest (22.79 mu) from two partners settle CLOUD_INSUFFICIENT | CHAIN_CORROBORATED | APPROVE |
| confirmation | P0210 | B072 | seed and ploughing for the declared maize area from two partners, nothing to settle | CHAIN_CORROBORATED | APPROVE |
"""


def _declared_mu(folder: Path) -> dict[str, float]:
    with open(folder / "declarations.csv", encoding="utf-8", newline="") as handle:
        return {row["plot_id"]: float(row["declared_area"]) * (15 if row["area_unit"] == "ha" else 1)
                for row in csv.DictReader(handle)}


def _write(path: Path, header: list[str], rows: list[list[object]], encoding: str = "utf-8") -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_bytes(text.getvalue().encode(encoding))


def build(folder: Path) -> None:
    """Write ``folder/chain/*.csv`` and ``folder/case_chain.toml`` from ``folder/declarations.csv``."""
    declared, norms, out = _declared_mu(folder), load_norms(), folder / "chain"
    out.mkdir(exist_ok=True)
    # inputs_below: maize seed for a fifth of B046's declared area (P0126).
    fifth = round(declared["P0126"] / 5 * norms["maize", "seed"], 1)
    # corroboration: wheat seed for all of P0231 (cloudy, under review), in 斤 (0.5 kg).
    wheat_jin = round(declared["P0231"] * norms["wheat", "seed"] * 2, 1)
    # confirmation: B072's maize seed for its declared area, from a second shop.
    b072_seed = round(declared["P0210"] * norms["maize", "seed"], 1)
    _write(out / "input_purchases.csv", ["partner_id", "borrower_id", "date", "crop", "input", "quantity", "unit",
                                         "plot_ids"], [
        ["SHOP-FQ-01", "B046", "2023-03-20", "maize", "seed", fifth, "kg", ""],
        ["SHOP-FQ-01", "B083", "2022-10-05", "wheat", "seed", wheat_jin, "斤", "P0231"],
        ["SHOP-YY-02", "B072", "2023-03-18", "maize", "seed", b072_seed, "kg", ""],
    ])
    _write(out / "machinery.csv", ["partner_id", "borrower_id", "date", "crop", "service", "quantity", "unit",
                                   "plot_ids"], [
        ["COOP-YJ-01", "B072", "2023-04-20", "玉米", "耕地", round(declared["P0210"], 2), "亩", ""],
        ["COOP-YJ-01", "B083", "2023-06-12", "小麦", "收获", round(declared["P0231"], 2), "亩", "P0231"],
        ["COOP-YJ-01", "B085", "2023-10-08", "大豆", "收获", round(declared["P0232"] / 15, 4), "公顷", ""],
        ["COOP-YJ-01", "B091", "2023-06-20", "小麦", "收获", round(declared["P0251"], 2), "亩", "P0251"],
    ], encoding="gbk")
    # sales_history: three maize seasons of B076 at about 250 kg per mu (table 435.5), in t, 斤 and kg.
    _write(out / "sales.csv", ["partner_id", "customer_id", "date", "crop", "quantity", "unit"], [
        ["GRAIN-XX-01", "C-0412", "2020-11-10", "maize", 70, "t"],
        ["GRAIN-XX-01", "C-0412", "2021-12-01", "maize", 134000, "斤"],
        ["GRAIN-XX-01", "C-0412", "2023-01-15", "maize", 72500, "kg"],
    ])
    _write(out / "customer_map.csv", ["partner_id", "customer_id", "borrower_id"], [["GRAIN-XX-01", "C-0412", "B076"]])
    _write(out / "planted_cases.csv", ["case", "plot_id", "borrower_id", "expected_code", "expected_status"], [
        ["inputs_below", "P0126", "B046", "INPUTS_BELOW_DECLARED", "REVIEW"],
        ["harvest_other_crop", "P0232", "B085", "CHAIN_OTHER_CROP", "REVIEW"],
        ["harvest_other_crop", "P0251", "B091", "CHAIN_OTHER_CROP", "REVIEW"],
        ["sales_history", "P0214", "B076", "SALES_BELOW_EXPECTED_YIELD", "APPROVE"],
        ["corroboration", "P0231", "B083", "CHAIN_CORROBORATED", "APPROVE"],
        ["confirmation", "P0210", "B072", "CHAIN_CORROBORATED", "APPROVE"],
    ])
    with atomic_path(folder / "case_chain.toml") as tmp:
        tmp.write_text(CASE, encoding="utf-8")


if __name__ == "__main__":
    build(ROOT / "sample_tiles")
