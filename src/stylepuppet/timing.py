"""Wall and CPU seconds of a run's stages, so a fixed cost (the start face's choice) can be told from the
per-frame one. CPU time is kept beside wall time because the machines we measure on are shared: a
one-thread run's CPU seconds move far less with the other processes' load than its wall seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

#: A point in time: (wall, CPU of this process) seconds.
Mark = tuple[float, float]


def now() -> Mark:
    """The current wall and process-CPU time."""
    return time.perf_counter(), time.process_time()


@dataclass
class StageClock:
    """Seconds by stage name: ``wall`` and ``cpu`` (this process's CPU time, all its threads)."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    def record(self, name: str, since: Mark) -> Mark:
        """Record stage ``name`` as lasting from ``since`` to now; return now (the next stage's start)."""
        mark = now()
        self.wall[name] = mark[0] - since[0]
        self.cpu[name] = mark[1] - since[1]
        return mark
