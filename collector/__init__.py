"""hodlboard collector: exchange trades, candles and tickers into InfluxDB 2."""
