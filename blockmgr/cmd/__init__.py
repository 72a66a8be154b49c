"""Console-script entry points: the only code that builds the process-global ``cfg.CONF``."""
