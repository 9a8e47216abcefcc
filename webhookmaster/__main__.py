"""``python -m webhookmaster``: the ``webhookmaster`` command."""

import sys

from webhookmaster.ops.cli import main

sys.exit(main())
