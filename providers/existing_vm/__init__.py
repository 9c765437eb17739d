"""existing_vm provider."""
