"""An --app module that prints to stdout while it is imported, as a chatty settings
module does; the ``Chancy`` it holds names the test database (``CHANCY_DSN``)."""

from chancy.app import Chancy

print("loading settings")

chancy = Chancy()
