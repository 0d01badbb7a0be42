"""Subcommands of the `hf-qkdelay` console command (see `hf_qkdelay.cli`)."""
