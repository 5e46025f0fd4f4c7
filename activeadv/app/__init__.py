"""The application layer: the use cases that the CLI and the service (``activeadv serve``) both call.

::

    cli/ (click: parse, call one use case, print)      serve (HTTP)
                 \\                                   /
                  app/  workspace   projects   labels   rounds   annotation   server   experiments
                 /          \\              \\                    \\
    loop, simulation, perfbench    store (SQL)    labelstudio/ (HTTP client, oracle)    lsserver
         |
    training, acquisition, attacks, data, networks (torch)          records, errors, settings (plain data)

A use case takes a ``Workspace`` (database, checkpoints, Label Studio), plain
values and a ``progress`` flag; it returns a frozen result (with ``to_dict``
for ``--json`` and HTTP) and raises ``ActiveAdvError`` for anything the user
can fix.  It never prints.  torch-level modules are imported inside the use
cases, so ``activeadv --help`` and the service's HTTP layer start fast.
"""

from activeadv.execution import Execution

__all__ = ["Execution"]
