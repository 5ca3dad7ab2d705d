from sqlvec.cli import main

raise SystemExit(main())
