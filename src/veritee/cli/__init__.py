"""The ``veritee`` command line."""
