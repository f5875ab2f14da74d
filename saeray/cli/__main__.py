import sys

from saeray.cli import main

sys.exit(main())
