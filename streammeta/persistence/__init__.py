"""What survives a restart: checkpoints, spill files of evicted entities, parameter files."""
