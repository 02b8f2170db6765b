"""The plugin's astroNN models (registered on import)."""
