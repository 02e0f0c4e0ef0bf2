"""Hostile-input corpus: the CLI as a subprocess against special files, symlinks, secrets,
arguments and YAML edge cases (cases.yaml), and a property-based test of the loader."""
