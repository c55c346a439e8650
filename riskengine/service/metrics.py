"""Prometheus metrics of one service process (its own registry, served at /metrics)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from riskengine.decision import Decision
from riskengine.service.tallies import TallyCounter, TallyHistogram

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0)


class ServiceMetrics:
    """Counters and histograms; those counted per decision are plain numbers counted on
    the event loop's thread (tallies.py), label children resolved once."""

    def __init__(self, scenes: Iterable[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # counted on the event loop for every decision: plain numbers (tallies.py)
        self.decisions = TallyCounter("riskengine_decisions", "Decisions by scene and outcome",
                                      ["scene", "decision"], r)
        self.rule_hits = TallyCounter("riskengine_rule_hits", "Rule hits by scene, rule, mode",
                                      ["scene", "rule", "mode"], r)
        self.latency = TallyHistogram("riskengine_decision_seconds",
                                      "Engine time per decision (seconds)", ["scene"],
                                      LATENCY_BUCKETS, r)
        self.request_latency = TallyHistogram("riskengine_request_seconds",
                                              "Evaluate request time, body read to response",
                                              ["scene", "endpoint"], LATENCY_BUCKETS, r)
        self.late = TallyCounter("riskengine_late_events", "Events scored late", ["scene"], r)
        self.duplicates = Counter("riskengine_duplicate_events_total",
                                  "Events whose event_id was already decided", ["scene"],
                                  registry=r)
        self.degraded = Counter("riskengine_degraded_decisions_total",
                                "Degraded decisions: fallbacks while the shared state was "
                                "unavailable, and events of keys a max_entities eviction "
                                "may have cut short",
                                ["scene"], registry=r)
        self.reloads = Counter("riskengine_ruleset_reloads_total",
                               "Rulesets put live, by scene and source (config, api, rollback, "
                               "guard, bus)",
                               ["scene", "source"], registry=r)
        self.guard_rollbacks = Counter("riskengine_guard_rollbacks_total",
                                       "New versions rolled back by the guarded rollout, by "
                                       "scene and kind (ruleset, model:<name>)",
                                       ["scene", "kind"], registry=r)
        self.reload_failures = Counter("riskengine_ruleset_reload_failures_total",
                                       "Refused rulesets, by source", ["source"], registry=r)
        self.errors = Counter("riskengine_request_errors_total",
                              "Refused or failed requests by status", ["status"], registry=r)
        self.log_failures = Counter("riskengine_decision_log_failures_total",
                                    "Decisions whose log write failed", registry=r)
        self.log_pending = Gauge("riskengine_decision_log_pending",
                                 "Decisions waiting for their log commit", registry=r)
        self.snapshots = Counter("riskengine_snapshots_total", "Snapshots written", registry=r)
        self.entities = Gauge("riskengine_entities", "Entities in memory", ["scene"],
                              registry=r)
        self.mirror_results = Counter(
            "riskengine_mirror_total", "Mirrored events by result: match, mismatch, error "
            "(the candidate not reached or refusing), dropped (the mirror queue was full)",
            ["result"], registry=r)
        self.mirror_errors = Counter("riskengine_mirror_errors_total",
                                     "Mirrored events not compared, by reason", ["reason"],
                                     registry=r)
        self.mirror_queue = Gauge("riskengine_mirror_queue_depth",
                                  "Requests waiting to be sent to the mirror candidate",
                                  registry=r)
        self.review_queue_size = Gauge("riskengine_review_queue_size",
                                       "Review decisions not resolved yet, by scene",
                                       ["scene"], registry=r)
        self.review_queue_oldest = Gauge("riskengine_review_queue_oldest_age_seconds",
                                         "Age of the oldest unresolved review decision "
                                         "(0 with none), by scene", ["scene"], registry=r)
        for s in scenes:  # shown at zero from the start
            for d in ("accept", "review", "reject"):
                self.decisions.inc((s, d), 0.0)
            self.late.inc((s,), 0.0)
        self._latency = {s: self.latency.child((s,)) for s in scenes}

    def observe(self, decision: Decision) -> None:
        """Count a decision (on the event loop's thread)."""
        scene = decision.scene
        self.decisions.counts[scene, decision.decision] += 1
        self._latency[scene].observe(decision.latency_ms / 1000.0)
        if decision.late:
            self.late.counts[scene, ] += 1
        for hit in decision.hits:
            self.rule_hits.inc((scene, hit.rule_id, "active"))
        for hit in decision.shadow_hits:
            self.rule_hits.inc((scene, hit.rule_id, "shadow"))

    def render(self) -> bytes:
        return generate_latest(self.registry)
