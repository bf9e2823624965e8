import sys

from greenmodel.cli.main import main

sys.exit(main())
