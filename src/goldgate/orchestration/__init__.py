"""Orchestrator targets built from the DAG in ``goldgate.dag``: a Prefect flow (``prefect_flow``)."""
