"""
The twistd plugin: C{twistd mqttx --config PATH}.

L{ServiceMaker} imports L{mqttx.service} only when C{mqttx} is run, so a
broken mqttx never breaks C{twistd --help}. This directory and its parent
have no C{__init__.py}: C{twisted.plugins} is Twisted's package.
"""

from twisted.application.service import ServiceMaker

mqttx = ServiceMaker("mqttx", "mqttx.service", "MQTT 3.1/3.1.1/5.0 broker", "mqttx")
