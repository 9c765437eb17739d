"""The plugin core: protocol, registry, server, runner and test kit."""
