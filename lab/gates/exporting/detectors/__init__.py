"""One module per export detector; each has NAME and detect(artifact, ctx)."""
