"""The interface (issue 13): Excel-ready tables, fast start, one way to report progress, consistent options."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from agricredit import schema
from agricredit.cli import main as cli_main
from agricredit.cli.main import cli
from agricredit.errors import EncodingError
from agricredit.privacy import DEMO_PII_KEY
from suite_keys import TEST_KEYS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_tiles"
VILLAGE = "封丘县东店村"  # a village of the sample borrower table


@pytest.fixture(scope="module")
def zh_output(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zh") / "out"
    result = CliRunner(env={"AGRICREDIT_PII_KEY": DEMO_PII_KEY}).invoke(
        cli, ["assess", "--sample", "--lang", "zh", "-o", str(folder), "--no-progress"])
    assert result.exit_code == 3, result.output
    return folder


def _excel_decode(data: bytes) -> str:
    """What Excel on Chinese Windows does with a CSV: UTF-8 if it starts with a BOM, else the ANSI code page 936."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    return data.decode("cp936", errors="replace")


def test_csv_opens_in_excel_on_chinese_windows_with_readable_chinese(zh_output):
    data = (zh_output / "borrowers.csv").read_bytes()
    assert VILLAGE in _excel_decode(data)
    # the same bytes without the BOM are what Excel garbled (issue 13: 灏佷笜鍘夸笢搴楁潙)
    assert _excel_decode(data[3:]).count(VILLAGE) == 0
    assert VILLAGE.encode("utf-8").decode("cp936") == "灏佷笜鍘夸笢搴楁潙"


def test_no_bom_is_an_option(tmp_path, monkeypatch):
    monkeypatch.setenv("AGRICREDIT_PII_KEY", DEMO_PII_KEY)
    result = CliRunner().invoke(cli, ["assess", "--sample", "--no-bom", "-o", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 3, result.output
    assert (tmp_path / "out" / "borrowers.csv").read_bytes().startswith(b"borrower,")


@pytest.mark.parametrize("flags,start", [([], b"\xef\xbb\xbfplot_id,"), (["--no-bom"], b"plot_id,")])
def test_every_csv_starts_with_a_bom_unless_told_not_to(tmp_path, flags, start):
    out = tmp_path / "areas.csv"
    result = CliRunner().invoke(cli, ["area", str(SAMPLE / "plots.geojson"), "-o", str(out), *flags])
    assert result.exit_code == 3, result.output
    assert out.read_bytes().startswith(start)
    for name in ("area", "stats", "season", "verify", "assess"):
        assert "no_bom" in {p.name for p in cli_main.AgricreditGroup().get_command(None, name).params}, name


def test_chinese_headers_with_stable_codes(zh_output):
    with open(zh_output / "borrowers.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    zh = {f.name: f.zh for f in schema.BORROWER_FIELDS}
    assert list(rows[0]) == [zh[f.name] for f in schema.BORROWER_FIELDS]
    assert {r[zh["status"]] for r in rows} <= {"APPROVE", "REVIEW", "DECLINE"}  # machine codes unchanged
    codes = {code for r in rows for code in r[zh["reason_codes"]].split(";") if code}
    assert codes and all(code.isupper() and code.isascii() for code in codes)
    assert all(any("\u4e00" <= c <= "\u9fff" for c in r[zh["explanation"]]) for r in rows)
    sheet = load_workbook(zh_output / "borrowers.xlsx", read_only=True).active
    header, first = list(sheet.iter_rows(min_row=1, max_row=2, values_only=True))
    assert list(header) == [zh[f.name] for f in schema.BORROWER_FIELDS]
    assert isinstance(first[header.index(zh["limit"])], int)
    # the machine formats keep the schema's field names
    properties = json.loads((zh_output / "borrowers.geojson").read_text(encoding="utf-8"))["features"][0]["properties"]
    assert list(properties) == [f.name for f in schema.BORROWER_FIELDS]


def test_help_and_version_do_not_import_the_heavy_libraries():
    probe = ("import sys\nfrom agricredit.cli.main import cli\n"
             "for args in (['--help'], ['--version'], ['stats', '--help'], ['assess', '--help']):\n"
             "    try:\n        cli(args)\n    except SystemExit:\n        pass\n"
             "print(sorted(m for m in ('numpy', 'pandas', 'scipy', 'geopandas', 'rasterio', 'shapely', 'sklearn')"
             " if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stderr.strip().splitlines()[-1] == "[]"


def test_every_command_has_examples_that_name_itself():
    for name in cli_main._command_modules():
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0
        assert "Examples:" in result.output, name
        examples = result.output.split("Examples:")[1].split("Options:")[0]
        assert f"agricredit {name}" in examples, name


def test_the_sensor_choices_are_the_library_sensors():
    from agricredit import sensors
    from agricredit.cli.options import SENSOR_NAMES

    assert SENSOR_NAMES == sensors.SENSORS


@pytest.mark.parametrize("flags,level", [([], logging.WARNING), (["-v"], logging.INFO), (["-vv"], logging.DEBUG),
                                         (["-vvv"], logging.DEBUG), (["-q"], logging.ERROR),
                                         (["-qq"], logging.CRITICAL), (["-qqq"], logging.CRITICAL),
                                         (["-v", "-q"], logging.WARNING)])
def test_quieter_flags_never_mean_more_output(flags, level):
    verbose = sum(f.count("v") for f in flags)
    quiet = sum(f.count("q") for f in flags)
    assert cli_main.verbosity_level(verbose, quiet) == level


def test_minus_qq_shows_no_traceback_and_no_log(monkeypatch):
    @click.command()
    def boom():
        logging.getLogger("agricredit.x").warning("a warning")
        from agricredit.errors import InputError

        raise InputError("bad row", path="t.csv", record=3)

    monkeypatch.setattr(cli_main.AgricreditGroup, "get_command", lambda self, ctx, name: boom)
    result = CliRunner().invoke(cli, ["-qq", "boom"])
    assert result.exit_code == 1
    assert result.stderr == "Error: t.csv: 3: bad row\n"


def test_ctrl_c_anywhere_exits_130(monkeypatch):
    @click.command()
    def slow():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main.AgricreditGroup, "get_command", lambda self, ctx, name: slow)
    result = CliRunner().invoke(cli, ["slow"])
    assert result.exit_code == 130
    assert "Interrupted" in result.stderr and "Traceback" not in result.stderr


def test_library_warnings_become_one_line_of_our_own(monkeypatch):
    from rasterio.errors import NotGeoreferencedWarning

    @click.command()
    def warn():
        warnings.warn("Dataset has no geotransform, gcps, or rpcs. The identity matrix will be returned.",
                      NotGeoreferencedWarning, stacklevel=1)
        warnings.warn("driver GeoJSON does not support open option X\nsecond line", RuntimeWarning, stacklevel=1)

    monkeypatch.setattr(cli_main.AgricreditGroup, "get_command", lambda self, ctx, name: warn)
    result = CliRunner().invoke(cli, ["warn"])
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert lines == [
        "WARNING agricredit: a raster has no georeferencing (no CRS or transform); its pixels cannot be placed on "
        "the map (rasterio NotGeoreferencedWarning)",
        "WARNING agricredit: driver GeoJSON does not support open option X (builtins RuntimeWarning)",
    ]


@pytest.mark.parametrize("flags,shown", [([], True), (["-q"], False), (["-vv"], True)])
def test_gdal_messages_logged_by_rasterio_are_one_line_records(monkeypatch, flags, shown):
    @click.command()
    def gdal():
        logging.getLogger("rasterio._env").warning("CPLE_AppDefined in TIFFReadDirectory: unknown tag 42113")
        logging.getLogger("rasterio._env").debug("GDAL chatter")

    monkeypatch.setattr(cli_main.AgricreditGroup, "get_command", lambda self, ctx, name: gdal)
    result = CliRunner().invoke(cli, [*flags, "gdal"])
    expected = "WARNING rasterio._env: CPLE_AppDefined in TIFFReadDirectory: unknown tag 42113\n"
    assert result.stderr == (expected if shown else "")  # no library debug chatter even with -vv


def test_progress_bars_have_count_rate_and_eta_and_are_off_when_stderr_is_not_a_terminal(tmp_path):
    args = ["stats", str(SAMPLE / "plots.geojson"), str(SAMPLE / "season" / "manifest.csv")]
    quiet = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "a.csv")])  # CliRunner's stderr is no terminal
    assert quiet.exit_code == 3 and "date/s" not in quiet.stderr and "%|" not in quiet.stderr
    shown = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "b.csv"), "--progress"])
    assert shown.exit_code == 3
    assert "zonal statistics: 317 plots x 10 dates" in shown.stderr
    assert "10/10 [" in shown.stderr and "date/s]" in shown.stderr  # count, elapsed<ETA, rate
    assert shown.stderr.count("zonal statistics: 317 plots") == 1


def test_ndvi_reports_blocks_with_the_same_bars(tmp_path):
    result = CliRunner().invoke(cli, ["ndvi", str(SAMPLE / "s2_l1c_eastern_shore.tif"), "--sensor", "s2-l1c",
                                      "-o", str(tmp_path / "ndvi.tif"), "--progress"])
    assert result.exit_code == 0, result.output
    assert "ndvi: 100%" in result.stderr and "block/s]" in result.stderr
    json.loads(result.stdout)  # the summary stays alone on stdout


@pytest.mark.parametrize("flags", [["-v", "--no-progress"], ["--progress"], ["-v", "--progress"]])
def test_each_stage_line_appears_once(tmp_path, monkeypatch, flags):
    monkeypatch.setenv("AGRICREDIT_PII_KEY", DEMO_PII_KEY)
    verbosity = [f for f in flags if f == "-v"]
    options = [f for f in flags if f != "-v"]
    result = CliRunner().invoke(cli, [*verbosity, "assess", "--sample", "-o", str(tmp_path / "out"), *options])
    assert result.exit_code == 3, result.output
    for stage in ("reading plots and tables", "season: phenology", "cross-verification and limits"):
        assert result.stderr.count(stage) == 1, (stage, result.stderr)


def test_minus_q_silences_stage_lines_and_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("AGRICREDIT_PII_KEY", DEMO_PII_KEY)
    result = CliRunner().invoke(cli, ["-q", "assess", "--sample", "-o", str(tmp_path / "out")])
    assert result.exit_code == 3
    assert result.stderr == "rejected GEOMETRY_INVALID (2): P0168, P0290\n"  # the rejected records, nothing else


def test_season_with_an_unknown_plot_fails_before_the_zonal_step(tmp_path, monkeypatch):
    import agricredit.cli.season

    monkeypatch.setattr(agricredit.cli.season, "observe", lambda *a, **k: pytest.fail("zonal step ran"))
    result = CliRunner().invoke(cli, ["season", str(SAMPLE / "plots.geojson"), str(SAMPLE / "season" / "manifest.csv"),
                                      "-o", str(tmp_path / "s.csv"), "--plot-id", "NOPE", "--chart",
                                      str(tmp_path / "c.png")])
    assert result.exit_code == 2 and "NOPE" in result.output
    assert not (tmp_path / "s.csv").exists()


def test_train_crop_without_its_label_column_fails_before_the_zonal_step(tmp_path, monkeypatch):
    import agricredit.cli.season

    monkeypatch.setattr(agricredit.cli.season, "observe", lambda *a, **k: pytest.fail("zonal step ran"))
    result = CliRunner().invoke(cli, ["train-crop", str(SAMPLE / "plots.geojson"),
                                      str(SAMPLE / "season" / "manifest.csv"), "-o", str(tmp_path / "model")])
    assert result.exit_code == 1 and "crop" in result.stderr and "Traceback" not in result.stderr


def test_assess_with_a_broken_crop_model_fails_before_the_zonal_step(tmp_path, monkeypatch):
    import agricredit.assess

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.skops").write_bytes(b"not a model")
    (model / "model_card.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(agricredit.assess, "observation_table", lambda *a, **k: pytest.fail("zonal step ran"))
    monkeypatch.setattr(agricredit.assess, "load_plots", lambda *a, **k: pytest.fail("plots read"))
    monkeypatch.setenv("AGRICREDIT_PII_KEY", DEMO_PII_KEY)
    result = CliRunner().invoke(cli, ["assess", "--sample", "--crop-model", str(model), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "model" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_stats_keeps_the_dates_between_start_and_end(tmp_path):
    out = tmp_path / "stats.csv"
    result = CliRunner().invoke(cli, ["stats", str(SAMPLE / "plots.geojson"), str(SAMPLE / "season" / "manifest.csv"),
                                      "--start", "2023-06-01", "--end", "2023-08-31", "-o", str(out)])
    assert result.exit_code == 3, result.output
    with open(SAMPLE / "season" / "manifest.csv", encoding="utf-8") as handle:
        expected = sorted({r["date"] for r in csv.DictReader(handle) if "2023-06-01" <= r["date"] <= "2023-08-31"})
    with open(out, encoding="utf-8-sig") as handle:
        assert sorted({r["date"] for r in csv.DictReader(handle)}) == expected and expected
    backwards = CliRunner().invoke(cli, ["stats", str(SAMPLE / "plots.geojson"), str(SAMPLE / "season"),
                                         "--start", "2023-08-01", "--end", "2023-06-01", "-o", str(out)])
    assert backwards.exit_code == 2 and "before --start" in backwards.output


@pytest.mark.parametrize("command", ["ndvi", "stats", "season", "train-crop", "verify", "assess"])
def test_options_are_the_same_on_every_command_that_reads_tiles_or_tables(command):
    params = {p.name: p for p in cli_main.AgricreditGroup().get_command(None, command).params}
    assert params["progress"].default is None  # auto: on a terminal
    assert "sensor" in params and "overwrite" in params
    if command != "ndvi":
        assert {"start", "end"} <= set(params)
    if command in ("season", "train-crop", "verify", "assess"):
        assert params["encodings"].multiple


@pytest.mark.parametrize("value,message", [("nope=gbk", "unknown table"), ("registry=no-such-codec", "unknown text"),
                                           ("klingon", "unknown text")])
def test_bad_encodings_are_usage_errors_before_any_work(value, message):
    result = CliRunner().invoke(cli, ["verify", "--sample", "-o", "x.csv", "--encoding", value])
    assert result.exit_code == 2 and message in result.output


def test_encoding_per_table_from_the_case_file_and_options(tmp_path):
    from agricredit.assess import load_case
    from agricredit.cli.options import resolve_case

    case_file = tmp_path / "case.toml"
    case_file.write_text((SAMPLE / "case.toml").read_text(encoding="utf-8").replace(
        'registry = "registry.csv"', 'registry = "registry_gbk.csv"') + '\n[tables.registry]\nencoding = "gbk"\n',
        encoding="utf-8")
    for name in ("plots.geojson", "registry_gbk.csv", "declarations.csv", "borrowers.csv"):
        shutil.copy(SAMPLE / name, tmp_path / name)
    (tmp_path / "season").symlink_to(SAMPLE / "season", target_is_directory=True)
    case = load_case(case_file)
    assert case.encoding_of("registry") == "gbk" and case.encoding_of("borrowers") is None
    merged = resolve_case(case_file, False, {"encodings": {"*": "utf-8"}})
    assert merged.encoding_of("registry") == "gbk" and merged.encoding_of("borrowers") == "utf-8"
    bad = tmp_path / "bad.toml"
    bad.write_text('[inputs]\nplots="p"\n[tables.registry]\nencodng = "gbk"\n', encoding="utf-8")
    with pytest.raises(Exception, match="tables.registry.encodng"):
        load_case(bad)


def test_a_big5_table_is_named_as_big5_not_blamed_on_a_column(tmp_path):
    from agricredit.tables import read_registry

    path = tmp_path / "registry_big5.csv"
    path.write_bytes("plot_id,holder_id,registered_area,area_unit,land_use,source\n"
                     "P1,B1,3.5,mu,耕地,確權登記\nP2,B2,1.2,mu,水田,封丘縣東店村\n".encode("big5"))
    with pytest.raises(EncodingError, match="Big5"):
        read_registry(path)
    assert list(read_registry(path, encoding="big5")["source"]) == ["確權登記", "封丘縣東店村"]
    gbk = read_registry(SAMPLE / "registry_gbk.csv")  # real GBK is still read without a word
    assert len(gbk) > 300


def test_a_registry_covering_few_plots_is_warned_about(tmp_path, monkeypatch):
    case = tmp_path / "case"
    shutil.copytree(SAMPLE, case)
    lines = (case / "registry.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (case / "registry.csv").write_text("".join(lines[:2]), encoding="utf-8")  # one row for 319 plots
    for variable, value in TEST_KEYS.items():
        monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(cli, ["assess", str(case / "case.toml"), "-o", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 3, result.output
    warnings_ = [line for line in result.stderr.splitlines() if "covers" in line]
    assert warnings_ == ["WARNING agricredit: the registry covers 1 of 317 assessable plots: the others go to review; "
                         "check the registry input"]
    full = CliRunner().invoke(cli, ["assess", "--sample", "-o", str(tmp_path / "full"), "--no-progress"])
    assert "covers" not in full.stderr
