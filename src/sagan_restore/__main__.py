import sys

from sagan_restore.cli import main

sys.exit(main())
