"""One module per DAG node of the declarative engine: the only code that reads and writes lake tables."""
