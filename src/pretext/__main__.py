from pretext.cli import main

raise SystemExit(main())
