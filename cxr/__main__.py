"""`python -m cxr ...` is the same as the `cxr` console script."""
from cxr.cli import main

raise SystemExit(main())
