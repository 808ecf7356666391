"""Pure data stages of the declarative engine: sources, typing, features and targets compiled to Ibis."""
