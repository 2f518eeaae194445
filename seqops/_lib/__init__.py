"""Internal helpers shared by the public layer: typing aliases, backends, validation."""
