"""HTTP routes of the translation service, one module per concern."""
