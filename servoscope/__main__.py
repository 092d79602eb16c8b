import sys

from servoscope.cli import main

sys.exit(main())
