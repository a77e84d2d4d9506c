"""The soak harness's parts (bench/soak.py runs them): the cluster and its faults, the simulated apps,
the history they leave and the invariant checker over it."""
