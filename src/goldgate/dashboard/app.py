"""Entry point of the goldgate dashboard, run by ``streamlit run`` (``goldgate ui`` starts it).

The workspace comes from ``GOLDGATE_WORKSPACE`` (as for every goldgate command) and the use case from
``GOLDGATE_USECASE``. Each page reads the workspace afresh on every rerun, so a run that finishes while the
dashboard is open shows up on the next click.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from goldgate.context import Context
from goldgate.dashboard import data, models, monitoring, pipeline, predict, predictions
from goldgate.usecase import UseCaseError

# url path -> (title, page function); the first page is the default one.
PAGES: dict[str, tuple[str, Callable[[Context], None]]] = {
    "pipeline": ("Pipeline", pipeline.render),
    "models": ("Models", models.render),
    "predictions": ("Predictions", predictions.render),
    "monitoring": ("Monitoring", monitoring.render),
    "predict": ("Predict", predict.render),
}


def open_dashboard_context() -> Context | None:
    """The context of this dashboard, or None (with the error shown) when the use case cannot be loaded."""
    try:
        return data.open_context()
    except (UseCaseError, ValueError) as exc:
        st.error(f"goldgate dashboard: {exc}")
        return None


def show_sidebar(ctx: Context) -> None:
    """Use case, workspace and current champion."""
    st.sidebar.markdown(f"**goldgate** · use case `{ctx.usecase.name}`")
    st.sidebar.caption(f"workspace {ctx.settings.workspace_dir}")
    champion = data.champion_version(ctx)
    name = ctx.usecase.models.registered_name
    st.sidebar.caption(f"champion {name} v{champion.version}" if champion else f"champion {name}: none yet")


def render_page(key: str) -> None:
    """Open the workspace and draw one page (``key`` is the page's url path)."""
    ctx = open_dashboard_context()
    if ctx is None:
        return
    show_sidebar(ctx)
    PAGES[key][1](ctx)


def page_function(key: str) -> Callable[[], None]:
    """A no-argument page callable for ``st.Page``, named after the page (Streamlit requires unique names)."""

    def page() -> None:
        render_page(key)

    page.__name__ = key
    return page


def main() -> None:
    """Configure the app and run the page the browser asked for."""
    st.set_page_config(page_title="goldgate", layout="wide")
    pages = [
        st.Page(page_function(key), title=title, url_path=key, default=i == 0)
        for i, (key, (title, _)) in enumerate(PAGES.items())
    ]
    st.navigation(pages).run()


if __name__ == "__main__":
    main()
