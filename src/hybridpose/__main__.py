"""``python -m hybridpose``: the same as the ``hybridpose`` command."""

import sys

from hybridpose.cli import main

sys.exit(main())
