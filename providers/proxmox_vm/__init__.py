"""proxmox_vm provider."""
