from gputopo.cli import main

raise SystemExit(main())
