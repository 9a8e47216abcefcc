"""The dead-letter counter, shared by every component that writes to the dead-letter topic (the
agents and the retry scheduler; one registry when they run in one process, as in the tests).
Each component exports its own kinds at 0 from the start."""

from prometheus_client import Counter

DEAD_LETTERED = Counter(
    "webhookmaster_dead_lettered_total",
    "Records sent to the dead-letter topic, by reason kind.",
    ["kind"],
)
