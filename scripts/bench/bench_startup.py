"""Start-up time of the CLI, as ratios against rasterio's ``rio --help`` measured in the same run.

Each case runs in a fresh interpreter (``python -m agricredit ...``), the
best of N runs (the least disturbed by other processes) is reported, and
``rio --help`` (rasterio's click CLI, which ships with a dependency of ours)
is the peer; ``python -c "import click"`` is the floor any click CLI pays
(interpreter start-up and click). Targets (issue 13): ``agricredit --help`` and ``--version``
under 0.3 s, a subcommand's ``--help`` under 0.5 s. Also reports which
heavy libraries each case imported.

Usage: ``python scripts/bench/bench_startup.py [N]`` (default 7 runs per case).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("numpy", "pandas", "scipy", "geopandas", "rasterio", "shapely", "pyproj", "sklearn", "matplotlib")

#: Prints the heavy modules a command imported, after it ran (its own exit is caught).
_PROBE = (
    "import sys\n"
    "from agricredit.cli.main import cli\n"
    "try:\n    cli({args!r}, prog_name='agricredit')\nexcept SystemExit:\n    pass\n"
    "print(','.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\n"
)


#: Children may cache their bytecode, as an installed package does (some shells set PYTHONDONTWRITEBYTECODE).
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def best_of(command: list[str], runs: int) -> float:
    """Best wall time of ``runs`` runs (after one untimed run that may write the bytecode cache)."""
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=_ENV)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=_ENV)
        times.append(time.perf_counter() - start)
    return min(times)


def heavy_imports(args: list[str]) -> str:
    probe = subprocess.run([sys.executable, "-c", _PROBE.format(args=args, heavy=HEAVY)], capture_output=True,
                           text=True, check=True)
    return probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else ""


def main(runs: int) -> None:
    rio = Path(sys.executable).with_name("rio")
    if not rio.exists():
        sys.exit(f"rio not found beside {sys.executable}: install rasterio in this environment")
    peer = best_of([str(rio), "--help"], runs)
    floor = best_of([sys.executable, "-c", "import click"], runs)
    print(f"peer: rio --help {peer:.3f} s; floor: python -c 'import click' {floor:.3f} s (best of {runs} each)")
    from agricredit.cli.main import _command_modules

    cases = [(["--help"], 0.3), (["--version"], 0.3)] + [([name, "--help"], 0.5) for name in sorted(_command_modules())]
    print(f"{'command':<32}{'seconds':>9}{'x rio':>8}{'x floor':>8}{'target':>8}  heavy imports")
    for args, target in cases:
        seconds = best_of([sys.executable, "-m", "agricredit", *args], runs)
        verdict = "ok" if seconds < target else "SLOW"
        print(f"{'agricredit ' + ' '.join(args):<32}{seconds:>9.3f}{seconds / peer:>8.2f}{seconds / floor:>8.2f}"
              f"{target:>7.1f}s {verdict:<4} "
              f"{heavy_imports(args) or '-'}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
