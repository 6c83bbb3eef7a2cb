"""The only part of the collector that knows InfluxDB."""
