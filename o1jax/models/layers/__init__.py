"""Building blocks of the decoder, one module per concept."""
