import sys

from videosspo.cli import main

sys.exit(main())
