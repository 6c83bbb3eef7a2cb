"""Holdings valued: cost basis, prices and FX, the valuation now and at any past hour, and how it is shown."""
