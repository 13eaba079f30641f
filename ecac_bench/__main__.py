import sys

from ecac_bench.cli import main

sys.exit(main())
