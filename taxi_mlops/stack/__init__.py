"""Scale-out mode on one machine: `taxi-mlops stack up|down|status|restart|env`."""
