"""Prometheus metrics of the daemon, on an explicit registry (no global singletons).

Names follow Prometheus conventions: ``streammeta_`` prefix, base units,
``_total`` counters, and never an entity id as a label.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from streammeta import __version__
from streammeta.io.codec import Reason

if TYPE_CHECKING:
    from streammeta.meta.outer import OuterResult

def _torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "unknown"


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """Every metric the daemon exports. Pass a fresh registry in tests."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total
        # Constant 1; the labels say what runs (join on it to split any metric by release).
        self.build_info = Gauge(
            "streammeta_build_info", "Versions of streammeta, Python and torch; always 1.",
            ["version", "python", "torch"], registry=r)
        self.build_info.labels(version=__version__, python=platform.python_version(),
                               torch=_torch_version()).set(1)
        self.records_consumed = Counter(
            "streammeta_records_consumed", "Records read from the input topic.", registry=r)
        self.observations = Counter(
            "streammeta_observations_processed",
            "Observations applied to entity state.", registry=r)
        self.forecasts = Counter(
            "streammeta_forecasts_published",
            "Forecast messages acknowledged by the broker.", registry=r)
        self.dead_letters = Counter(
            "streammeta_dead_letters", "Records sent to the dead-letter topic, by reason.",
            ["reason"], registry=r)
        for reason in Reason:  # export every reason at 0 so alerts and rates see them
            self.dead_letters.labels(reason=reason.value)
        self.batch_duration = Histogram(
            "streammeta_batch_duration_seconds",
            "Time to process one polled batch: decode, engine, publish, commit.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.record_latency = Histogram(
            "streammeta_record_latency_seconds",
            "From a record's Kafka timestamp to its forecasts being acknowledged.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.consumer_lag = Gauge(
            "streammeta_consumer_lag_records",
            "Records behind the end of each assigned input partition.",
            ["partition"], registry=r)
        self.entities = Gauge(
            "streammeta_entities_resident", "Entities with state in memory.", registry=r)
        self.model_version = Gauge(
            "streammeta_model_version", "Version of the parameters serving forecasts.",
            registry=r)
        self.online_error = Gauge(
            "streammeta_online_error",
            "Exponentially weighted mean absolute error of resolved forecasts, in units of "
            "each entity's running standard deviation; model = streammeta or seasonal_naive.",
            ["model"], registry=r)
        self.scored = Counter(
            "streammeta_forecasts_scored",
            "Forecast values resolved by an arriving observation and scored.", registry=r)
        self.gap_steps = Counter(
            "streammeta_gap_steps_filled", "Missing steps filled by interpolation.", registry=r)
        self.entity_resets = Counter(
            "streammeta_entity_resets",
            "Entities restarted cold after a gap longer than series.max_gap_fill.", registry=r)
        self.evicted = Counter(
            "streammeta_entities_evicted",
            "Entities moved to disk to stay under engine.max_entities (least recently "
            "observed first).", registry=r)
        self.paged_in = Counter(
            "streammeta_entities_paged_in", "Evicted entities read back from disk when they "
            "returned.", registry=r)
        self.drift_reinitialised = Counter(
            "streammeta_drift_reinitialised",
            "Entities whose error drifted (Page-Hinkley): φ re-initialised from memory.",
            registry=r)
        self.guarded = Counter(
            "streammeta_guarded_forecasts",
            "Forecasts blended with (or served by) the initial θ's, by meta.guard: the "
            "served version forecast that entity worse so far.", registry=r)
        self.memory_entries = Gauge(
            "streammeta_memory_entries", "Entries in the external memory of tasks.",
            registry=r)
        self.memory_retrievals = Counter(
            "streammeta_memory_retrievals",
            "New or drifted entities initialised from their neighbours in memory.", registry=r)
        self.memory_similarity = Histogram(
            "streammeta_memory_similarity",
            "Mean cosine similarity of the neighbours used by one retrieval.",
            buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0), registry=r)
        self.kafka_errors = Counter(
            "streammeta_kafka_errors", "Errors talking to Kafka, by operation.",
            ["operation"], registry=r)
        for operation in ("poll", "heartbeat", "produce", "commit", "memory"):
            self.kafka_errors.labels(operation=operation)
        self.commits = Counter(
            "streammeta_offset_commits", "Successful offset commits.", registry=r)
        self.checkpoint_duration = Histogram(
            "streammeta_checkpoint_duration_seconds", "Time to write one checkpoint.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.checkpoint_snapshot = Histogram(
            "streammeta_checkpoint_snapshot_seconds",
            "Time the loop stopped for a periodic checkpoint: the snapshot of the state; "
            "the file is written beside the loop.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.checkpoint_last_success = Gauge(
            "streammeta_checkpoint_last_success_timestamp_seconds",
            "Unix time of the last checkpoint written.", registry=r)
        self.checkpoint_bytes = Gauge(
            "streammeta_checkpoint_size_bytes", "Size of the last checkpoint file.", registry=r)
        self.checkpoint_expired = Counter(
            "streammeta_checkpoint_expired",
            "Partitions restored from a checkpoint whose offset is outside the log (deleted "
            "by retention, or beyond the partition's end); they continue from the earliest "
            "retained offset (beyond the end: from kafka.auto_offset_reset).", registry=r)
        self.checkpoint_failures = Counter(
            "streammeta_checkpoint_failures", "Checkpoints that could not be written.",
            registry=r)
        self.outer_duration = Histogram(
            "streammeta_outer_loop_duration_seconds", "Time of one outer-loop run.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=r)
        self.outer_updates = Counter(
            "streammeta_outer_loop_updates", "Outer-loop runs that produced a candidate version.",
            registry=r)
        self.promotions = Counter(
            "streammeta_model_promotions", "Candidate versions promoted to serving.", registry=r)
        self.rejections = Counter(
            "streammeta_model_rejections",
            "Candidate versions rejected: worse than serving on held-out tasks.", registry=r)
        self.meta_loss = Gauge(
            "streammeta_meta_loss", "Mean query loss of the last outer-loop run.", registry=r)
        # Global versions (meta.role ingest/trainer): what is served, what exists.
        self.version_newest = Gauge(
            "streammeta_model_version_newest",
            "Newest version read from the versions topic (ingest), or published (trainer).",
            registry=r)
        self.version_lag = Gauge(
            "streammeta_model_version_lag",
            "Versions the served one is behind the newest read from the versions topic.",
            registry=r)
        self.version_lag_seconds = Gauge(
            "streammeta_model_version_lag_seconds",
            "From the newest version's publication to this replica serving it (last one).",
            registry=r)
        self.trainer_leading = Gauge(
            "streammeta_trainer_leading", "1 while this trainer holds the lease.", registry=r)
        self.trainer_tasks_per_second = Gauge(
            "streammeta_trainer_tasks_per_second",
            "Tasks meta-learned per second of the last outer-loop run.", registry=r)
        self.task_samples = Counter(
            "streammeta_task_samples",
            "Task histories sent and acknowledged (ingest) or loaded (trainer).", registry=r)
        self.task_samples_dropped = Counter(
            "streammeta_task_samples_dropped",
            "Task histories not sent (ingest): not acknowledged in time, or not queued "
            "while the queue to the broker was full (each time; they wait in the buffer).",
            ["reason"], registry=r)
        for dropped in ("unacknowledged", "queue_full"):  # exported at 0 from the start
            self.task_samples_dropped.labels(reason=dropped)
        self.loop_heartbeat = Gauge(
            "streammeta_loop_last_iteration_timestamp_seconds",
            "Unix time at which the processing loop last completed an iteration.", registry=r)
        self.ready = Gauge(
            "streammeta_ready", "1 when assigned, restored and serving, else 0.", registry=r)

    def outer_result(self, result: OuterResult) -> None:
        self.outer_duration.observe(result.seconds)
        self.outer_updates.inc()
        (self.promotions if result.promoted else self.rejections).inc()
        self.meta_loss.set(result.meta_loss)

    def count_error(self, operation: str) -> None:
        self.kafka_errors.labels(operation=operation).inc()
