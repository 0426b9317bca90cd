"""fleetmail's benchmarks: `make bench` runs them all on embedded defaults."""
