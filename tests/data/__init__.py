"""Tests of the declarative engine's pure stages (a package, so its module names may repeat those under tests/)."""
