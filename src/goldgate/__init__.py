"""goldgate: from raw tabular / time-series data to a monitored production model."""

__version__ = "0.1.0"
