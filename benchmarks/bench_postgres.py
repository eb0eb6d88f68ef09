"""PostgresSink's rows/s in a pipeline next to plain psycopg ``executemany`` with the same batch size.

    python benchmarks/bench_postgres.py [--rows 12000] [--rounds 3]
    pytest benchmarks/bench_postgres.py --benchmark-only

The benchmark starts its own PostgreSQL cluster (initdb in a temporary folder, a free loopback port, fsync
off: tests/connectors/_postgres.py) and removes it at the end; no other database is touched. Both cases write
the same telemetry messages (``{"i", "v", "asset"}``) into a fresh table of the same shape (the sink's key
columns, its unique key, ``extra jsonb``, and a ``written timestamptz DEFAULT clock_timestamp()`` column that
neither case fills), with ``INSERT ... ON CONFLICT DO NOTHING``, one transaction per batch:

- ``edgeflow``: a producer node (its own process, as fast as the ring takes frames) -> ``PostgresSink``
  (DURABLE, frames held until the COMMIT; it writes multi-row statements, see edgeflow/connectors/postgres.py).
- ``plain``: one process turns the same messages into tuples and calls ``executemany`` + ``commit`` per batch,
  as a hand-written psycopg loop does.

Shapes: ``1 row/frame``: the sink closes a batch at 24 held frames (``max_held_frames``), so both cases write
24 rows per transaction; ``25 rows/frame`` (a list of 25 messages per frame) with ``batch_size=500``: 500 rows
per transaction in both cases. The figure is rows per second between the first and the last row's
``written`` time (start-up excluded the same way for both); every run checks that each message is in the
table exactly once. Cases alternate ``--rounds`` times; the medians and the ratio are shown (issue 13 target:
edgeflow >= 0.8x plain).
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import statistics
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))             # a checkout that is not pip-installed; children inherit it

import psycopg  # noqa: E402

from edgeflow import EdgeApp  # noqa: E402
from edgeflow.connectors import PostgresSink  # noqa: E402
from tests.connectors import _postgres, pg_nodes  # noqa: E402

SHAPES = {"1 row/frame": (1, 24), "25 rows/frame": (25, 500)}      # shape -> (rows per frame, batch size)
CASES = ("plain", "edgeflow")
TARGET = 0.8
DDL = ("CREATE TABLE {t} (frame_id bigint NOT NULL, topic text NOT NULL, ts timestamptz NOT NULL, "
       "idx integer NOT NULL, i bigint, v double precision, asset text, extra jsonb, "
       "written timestamptz DEFAULT clock_timestamp(), UNIQUE (topic, ts, frame_id, idx))")
INSERT = ("INSERT INTO {t} (frame_id, topic, ts, idx, i, v, asset, extra) "
          "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (topic, ts, frame_id, idx) DO NOTHING")


def messages(n: int) -> list[dict]:
    """What pg_nodes.Steady sends (the edgeflow case's producer)."""
    return [{"i": i, "v": i / 2, "asset": f"m{i % 4}"} for i in range(n)]


def new_table(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(DDL.format(t=name))


def rate_and_check(url: str, name: str, n: int) -> float:
    """Rows per second from the first to the last ``written``; checks every message is there once."""
    with psycopg.connect(url, autocommit=True) as conn:
        total, distinct, first, last = conn.execute(
            f"SELECT count(*), count(DISTINCT i), min(written), max(written) FROM {name}").fetchone()
        conn.execute(f"DROP TABLE {name}")
    if (total, distinct) != (n, n):
        raise AssertionError(f"{name}: {total} rows, {distinct} distinct, for {n} messages")
    return (n - 1) / (last - first).total_seconds()


def run_plain(url: str, name: str, n: int, rows_per_frame: int, batch: int) -> float:
    new_table(url, name)
    items = messages(n)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        statement = INSERT.format(t=name)
        base = datetime.datetime.now(datetime.timezone.utc)
        for start in range(0, n, batch):
            rows = []
            for k in range(start, min(n, start + batch)):
                m = items[k]
                frame = k // rows_per_frame
                ts = base + datetime.timedelta(microseconds=frame)
                rows.append((frame + 1, "src", ts, k % rows_per_frame, m["i"], m["v"], m["asset"], None))
            cur.executemany(statement, rows)
            conn.commit()
    return rate_and_check(url, name, n)


def run_edgeflow(url: str, name: str, n: int, rows_per_frame: int, batch: int) -> float:
    new_table(url, name)
    app = EdgeApp(f"benchpg{os.getpid()}{name}")
    app.node(pg_nodes.Steady, name="src", count=n, rows=rows_per_frame, fps=None)
    app.node(PostgresSink, name="db", url=url, table=name, batch_size=batch)
    app.link("src").to("db")
    with app.start() as running:
        code = running.wait(300)
    if code != 0:
        raise AssertionError(f"{name}: the pipeline ended with exit code {code}")
    return rate_and_check(url, name, n)


def run_case(url: str, case: str, shape: str, n: int, tag: str) -> float:
    rows_per_frame, batch = SHAPES[shape]
    run = run_edgeflow if case == "edgeflow" else run_plain
    return run(url, f"bench_{case}_{rows_per_frame}_{tag}", n, rows_per_frame, batch)


def rows_for(shape: str, rows: int) -> int:
    return rows if SHAPES[shape][0] == 1 else rows * 4


def measure(url: str, rows: int, rounds: int, progress=print) -> dict:
    """{(shape, case): [rows/s per round]}; the cases alternate, in reverse order every other round."""
    results: dict = {}
    k = 0
    for shape in SHAPES:
        for r in range(rounds):
            for case in (CASES if r % 2 == 0 else CASES[::-1]):
                k += 1
                value = run_case(url, case, shape, rows_for(shape, rows), str(k))
                results.setdefault((shape, case), []).append(value)
                progress(f"  {shape:>14} {case:>9} round {r + 1}: {value:9.0f} rows/s")
    return results


def table(results: dict) -> tuple[str, list[str]]:
    lines = [f"{'shape':>14} {'batch':>6} {'plain rows/s':>13} {'edgeflow rows/s':>16} {'ratio':>6}"]
    failures = []
    for shape, (_, batch) in SHAPES.items():
        plain = statistics.median(results[(shape, "plain")])
        ef = statistics.median(results[(shape, "edgeflow")])
        lines.append(f"{shape:>14} {batch:>6} {plain:13.0f} {ef:16.0f} {ef / plain:5.2f}x")
        if ef / plain < TARGET:
            failures.append(f"{shape}: edgeflow {ef / plain:.2f}x plain (target {TARGET}x)")
    return "\n".join(lines), failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12000, help="rows per run at 1 row/frame (4x at 25)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgeflow-bench-pg-") as directory:
        cluster = _postgres.start(pathlib.Path(directory))
        try:
            results = measure(cluster.new_database(), args.rows, args.rounds)
        finally:
            cluster.stop()
    text, failures = table(results)
    print()
    print(text)
    for failure in failures:
        print(f"below target: {failure}")
    return 0


# -- pytest-benchmark ---------------------------------------------------------------------------------------

try:
    import pytest
except ImportError:                         # plain-script mode needs no pytest
    pytest = None

if pytest is not None:
    FAST = os.environ.get("EDGEFLOW_BENCH_FAST") == "1"

    @pytest.fixture(scope="module")
    def database(tmp_path_factory):
        cluster = _postgres.start(tmp_path_factory.mktemp("pg"))     # skips (fails on CI) without PostgreSQL
        try:
            yield cluster.new_database()
        finally:
            cluster.stop()

    @pytest.mark.parametrize("shape", list(SHAPES))
    @pytest.mark.parametrize("case", CASES)
    def test_postgres_rows_per_second(benchmark, database, case: str, shape: str) -> None:
        benchmark.group = f"postgres {shape}"
        n = 200 if FAST else rows_for(shape, 6000)
        counter = iter(range(1, 1 << 30))

        def once() -> float:
            return run_case(database, case, shape, n, f"t{next(counter)}")

        value = benchmark.pedantic(once, rounds=1 if FAST else 3, iterations=1)
        benchmark.extra_info.update(rows_per_s=value, rows=n)
        assert value > 0


if __name__ == "__main__":
    sys.exit(main())
