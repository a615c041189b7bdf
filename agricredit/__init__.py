"""agricredit: cross-verified credit limits for farmers from satellite, plots and registries."""

__version__ = "0.1.0"
