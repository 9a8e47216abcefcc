"""What the tests share: one ``free_port``, one ``eventually()``, one component-process runner,
one topic reader, receivers, record factories, and the fixtures (``fixtures_*`` modules,
registered as pytest plugins by tests/conftest.py)."""
