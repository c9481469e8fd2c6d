"""Back-tests without Kafka: protocols, baselines and peers, scores, reports."""
