"""The code's boundaries: checks that `make lint` runs beside import-linter."""
