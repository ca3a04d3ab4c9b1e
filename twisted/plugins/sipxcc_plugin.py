"""twistd plugin: ``twistd sipxcc --config PATH``.

This file lives in the ``twisted.plugins`` namespace portion; it must stay import-light
(ServiceMaker imports sipxcc.tap only when the plugin is used).
"""

from twisted.application.service import ServiceMaker

sipxcc = ServiceMaker(
    "sipxcc",
    "sipxcc.tap",
    "Third-party call control (click-to-call) for a sipX PBX.",
    "sipxcc",
)
