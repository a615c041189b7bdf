"""The loan officer's report: what ``assess`` keeps for it, and the pages ``agricredit report`` writes.

- :mod:`agricredit.report.data`: the NDVI chip around each plot at its peak
  date and each plot's season series, written by ``assess`` into its output
  folder (``chips.parquet``, ``series.parquet``) so that the report needs no
  access to the tiles;
- :mod:`agricredit.report.charts`: the maps and charts (matplotlib, PNG as
  ``data:`` URIs);
- :mod:`agricredit.report.fairness`: approval rate and limits by group, with
  the adverse-impact ratio;
- :mod:`agricredit.report.pages`: the self-contained HTML pages.
"""
