"""``python -m hybridpose.cli``: the ``hybridpose`` command."""

import sys

from hybridpose.cli import main

sys.exit(main())
