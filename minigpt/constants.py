"""Values that several layers must agree on."""

# Label of a position the loss skips (a prompt token, padding): cross_entropy's default ignore_index.
IGNORE_INDEX = -100
