"""nixos_config provider."""
