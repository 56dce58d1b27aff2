"""The commands of `harness`, one module each: `NAME`, `HELP`, `add_parser(sub, common)` (its parser and
options, `func` set to its `main(args) -> exit code`) and a typed function doing the work, which tests and
the library API (`harness.verify`, `harness.report`, ...) call. A module imports nothing heavy at its top:
the command line imports every one of them to list the commands, and `harness --help` starts in a blink.
"""

from __future__ import annotations

from harness.commands import (
    audit,
    bench,
    export,
    fetch,
    impact,
    import_,
    notify,
    plan,
    rehearse,
    report,
    rescore,
    run,
    verify,
)
from harness.commands import list as list_

# In the order `harness --help` lists them.
COMMANDS = (list_, fetch, verify, bench, run, report, notify, rescore, export, import_, audit, plan, rehearse, impact)
