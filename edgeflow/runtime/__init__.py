"""Running an app: launcher, supervisor, receive loop, registry, metrics and the `edgeflow bench` workloads."""
