"""Benchmarks: `make bench` prints requests/s and latency per endpoint under the production config."""
