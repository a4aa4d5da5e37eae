"""Which blocks and linears of a quantized candidate cause its error, and the fixes that follow."""

TOKENS = 256            # corpus positions a diagnosis averages its KL over: 2 windows of 128
LINEAR_BLOCKS = 4       # the most sensitive blocks whose linears are swapped one by one
