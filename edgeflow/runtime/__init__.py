"""Running an app: launcher, supervisor, loop, registry, metrics, and the `edgeflow bench` workloads."""
