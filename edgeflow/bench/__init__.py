"""Benchmark workloads: what `edgeflow bench`, benchmarks/run_ring.py and benchmarks/run_runtime.py measure.

Not part of the runtime (nothing under edgeflow/runtime imports this package); they use edgeflow's public
transports and nodes like any application would, next to plain-Python baselines.

Two-process cases (one producer here, one consumer child), split by side:

- ``payload``: what every frame carries (stamp and index markers) and the frame sizes.
- ``results``: BenchConfig (what to measure), BenchResult (what came out), BenchError.
- ``producer``: the edgeflow sender and ``Session``, which drives one case (latency, then a burst).
- ``consumer``: the child: receivers and the checks every frame goes through.
- ``baselines``: multiprocessing.Queue, Pipe and pyzmq, both sides.
- ``peers``: iceoryx2 (loan with event wake-up / busy poll, send_copy), both sides.
- ``peer_report``: the comparison with iceoryx2 in rounds: medians, ratios, the targets of issue 17.
- ``floors``: the machine's floors in the same run (a semaphore wake-up, one memcpy).
- ``children``: starting, talking to and stopping child processes; finding the ones left behind.
- ``ring``: the case tables and a full run of the ring benchmark.
- ``table``: the plain-text table, ratios, target checks and JSON of a ring run.

The runtime benchmark (nodes beside the raw ring):

- ``runtime``: latency pairs, CPU per frame and hop, a full run.
- ``nodes``: the benchmark's nodes and apps, their report files and app names.
- ``startup``: ``python main.py`` to the first frame, and the import floor.

Other transports' cases (Redis, TCP, pickle, redis-py) are in edgeflow.cli._benchnet, on the same Session.
"""
