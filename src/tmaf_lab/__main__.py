from tmaf_lab.cli import main

raise SystemExit(main())
