"""`paypost bench`: throughput, latency, replay, the report at scale and memory, against the
broker's own round trip measured in the same run on the same machine.

Each run starts from a clean vhost (when the broker is local) and a clean database, runs paypost
as a separate process (so its memory is its own), and prints a table, then one JSON line.

- ``probes``: the disk probe, the CPU meter, processes found by their command line;
- ``load``: the payments, the publisher, the services and `paypost run` as a process;
- ``phases``: one module per phase; ``runner`` runs them in order on the ``rig``;
- ``rendering``: the results, their table and the JSON summary.
"""

from paypost.bench.rendering import Results, render, summary
from paypost.bench.runner import Sizes, run

__all__ = ["Results", "Sizes", "render", "run", "summary"]
