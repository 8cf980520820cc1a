"""nightwarden's shared library: config, state, firewall, mail and the job runner."""

__version__ = "0.1.0"
