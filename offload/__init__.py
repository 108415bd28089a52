"""The ``offload`` command: a small core (:mod:`offload.cli`) plus the subcommands each part
of Offload registers under the ``offload.commands`` entry-point group."""
