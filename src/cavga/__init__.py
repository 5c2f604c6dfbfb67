"""cavga: CAVGA (Venkataramanan et al., ECCV 2020), attention-guided anomaly localization."""

__version__ = "0.1.0"
