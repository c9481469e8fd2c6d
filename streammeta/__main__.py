from __future__ import annotations

from streammeta.cli import main

raise SystemExit(main())
