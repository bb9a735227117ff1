"""The hypothesis profile of the hostile-input properties: reproducible and small.

``derandomize=True`` makes every run draw the same examples, so CI is reproducible and a failure
reproduces locally; ``deadline=None`` because the first call of a torch op can be slow on a
shared machine. Each test takes this profile as its parent
(``@settings(settings.get_profile("hostile"), max_examples=...)``) and sets its own example
count, which keeps the whole folder under a minute on two cores.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "hostile",
    derandomize=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
