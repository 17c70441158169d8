#!/usr/bin/env python3
"""Process AGI hook for asterisk-autoretry (copy into Asterisk's agi-bin, mode 0755).

Hand a failed outbound call that other software placed to autoretry.
Dialplan, after Dial(): AGI(autoretry-manage.py,<retry profile>[,<number>[,<target>]]).

The logic is in the package: install asterisk-autoretry (and so pyst2) into the
python3 that Asterisk runs this file with; see asterisk-conf/README.md.
"""

import sys

try:
    from ami_listener.agi_handlers import main_process
except ImportError as exc:  # told to the Asterisk console; AGISTATUS becomes FAILURE
    sys.stderr.write(
        f"{sys.argv[0]}: cannot import the asterisk-autoretry package ({exc}); "
        f"install it for {sys.executable}: pip install asterisk-autoretry\n"
    )
    sys.stdout.write("FAILURE\n")
    sys.exit(1)

sys.exit(main_process("manage"))
