"""Stream mode of the scorer: consume events from Kafka, add online features from Redis, score
with the same engine as the gRPC path, produce a verdict per event (docs/streaming.md)."""
