"""``python -m activeadv`` is the ``activeadv`` command."""

from activeadv.cli import main

main()
