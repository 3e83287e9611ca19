"""One module per notebook: its parameters, the sweep at each scale, its tables, claims and figures."""
