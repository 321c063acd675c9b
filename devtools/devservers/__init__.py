"""Real SMTP and chemical-API servers for tests and demos, with fault injection.

The handlers talk to their dependencies over real sockets, so they are tested against real
servers rather than mocks: a mock cannot refuse a connection, time out, or reply 451.
`python -m devtools smtp` / `chemical-api` run them in the foreground (devtools/cli.py).
"""

from devtools.devservers.chemical_api import MODES, ChemicalApiServer, Mode, chemical_record
from devtools.devservers.smtp import ReceivedEmail, SmtpSink
from devtools.ports import LOCALHOST, free_port

__all__ = [
    "LOCALHOST",
    "MODES",
    "ChemicalApiServer",
    "Mode",
    "ReceivedEmail",
    "SmtpSink",
    "chemical_record",
    "free_port",
]
