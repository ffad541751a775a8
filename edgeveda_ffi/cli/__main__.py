"""``python -m edgeveda_ffi.cli``: the ``edgeveda`` command."""

from . import main

raise SystemExit(main())
