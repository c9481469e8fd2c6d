"""Input and output: the record codec, Source/Sink protocols with in-memory fakes,
the Kafka edge, the embedded broker, data sets and replay."""
