import sys

from relaxd.cli import main

sys.exit(main())
