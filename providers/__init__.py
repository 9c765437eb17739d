"""The built-in providers, each registered through the entry-point group like any plugin."""
