"""PDF of a report page through headless Chromium (Debian's ``chromium``), when it is installed."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from agricredit.errors import OutputError

__all__ = ["CHROMIUM_NAMES", "find_chromium", "print_pdf"]

#: Executable names of a Chromium-based browser, in the order looked for on PATH.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The path of a headless-capable Chromium on PATH, or ``None`` when none is installed."""
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def print_pdf(page: Path, pdf: Path, *, browser: str, timeout_s: float = 60.0) -> Path:
    """Print ``page`` (an HTML file) to ``pdf`` with headless Chromium (A4, backgrounds, no header/footer).

    Raises
    ------
    OutputError
        Chromium failed or wrote nothing.
    """
    with tempfile.TemporaryDirectory(prefix="agricredit-chromium-") as profile:
        try:
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                            "--no-pdf-header-footer", "--print-to-pdf-no-header", f"--print-to-pdf={pdf}",
                            page.resolve().as_uri()], check=True, capture_output=True, timeout=timeout_s)
        except (OSError, subprocess.SubprocessError) as error:
            raise OutputError(f"headless Chromium could not print the page ({type(error).__name__})", path=pdf) from error
    if not pdf.is_file() or pdf.stat().st_size == 0:
        raise OutputError("headless Chromium wrote no PDF", path=pdf)
    return pdf
