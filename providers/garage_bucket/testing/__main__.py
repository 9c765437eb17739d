"""Serve an emulated Garage (admin API and S3) until interrupted, to try the provider by hand."""

from .fixtures import main

main()
