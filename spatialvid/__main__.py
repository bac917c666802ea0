from spatialvid.cli import main

raise SystemExit(main())
