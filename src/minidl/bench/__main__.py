"""python -m minidl.bench: see the package docstring, or --help."""
import sys

from minidl.bench.cli import main

sys.exit(main())
