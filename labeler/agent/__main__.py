"""``python -m labeler.agent`` = ``gputopo agent`` (used by the image entrypoint and tests)."""

import sys

from labeler.agent.cli import main

raise SystemExit(main(sys.argv[1:]))
