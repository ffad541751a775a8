"""``python -m edgeveda_ffi``: the ``edgeveda`` command."""

from .cli import main

raise SystemExit(main())
