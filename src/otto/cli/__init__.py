"""The ``otto`` command line (Typer and Rich live here, never in the core)."""
