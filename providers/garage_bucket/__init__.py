"""garage_bucket provider."""
