"""The goldgate dashboard: a Streamlit app over one workspace and use case, started by ``goldgate ui``.

``app.py`` is the entry point handed to ``streamlit run``; each page is one module (``pipeline``, ``models``,
``predictions``, ``monitoring``, ``predict``) with a ``render(ctx)`` function; ``data.py`` holds every read, made
through goldgate's own library (the lake, the registry helpers, the run log and the MLflow client).
"""

from __future__ import annotations

from pathlib import Path

APP_FILE = Path(__file__).with_name("app.py")
