"""C{python -m mqttx}: the C{mqttx} command (see L{mqttx.cli})."""

import sys

from mqttx.cli import main

sys.exit(main(sys.argv[1:]))
