"""``python -m backend.app.worker``: run a worker with settings from the environment."""

import sys

from backend.app.worker.supervisor import main

sys.exit(main())
