#!/usr/bin/env python3
"""Generates segwatch-dashboard.json: python3 configs/grafana/generate.py [OUT]."""
import json, sys
ds = {"type": "prometheus", "uid": "${datasource}"}
panels = []
pid = [0]
y = [0]
def nid():
    pid[0] += 1
    return pid[0]
def row(title):
    panels.append({"type": "row", "title": title, "id": nid(), "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y[0]}, "panels": []})
    y[0] += 1
def panel(kind, title, targets, x, w, h=8, unit=None, desc="", extra=None):
    p = {"type": kind, "title": title, "id": nid(), "datasource": ds, "description": desc,
         "gridPos": {"h": h, "w": w, "x": x, "y": y[0]},
         "targets": [dict({"datasource": ds, "expr": e, "legendFormat": l, "refId": chr(65 + i)},
                          **({"format": "table", "instant": True} if kind == "table" else {}))
                     for i, (e, l) in enumerate(targets)],
         "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}}
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    if extra:
        p.update(extra)
    panels.append(p)
S = 'instance=~"$instance"'
def m(name, extra=""):
    return name + "{" + S + (", " + extra if extra else "") + "}"
RI = "[$__rate_interval]"
row("Capture health")
panel("timeseries", "Packets per second", [("sum by (instance) (rate(" + m("segwatch_capture_packets_total") + RI + "))", "{{instance}}")], 0, 8, unit="pps",
      desc="Frames read from the mirror port or capture file.")
drops = "sum by (instance) (rate(" + m("segwatch_capture_dropped_packets_total") + RI + "))"
pkts = "sum by (instance) (rate(" + m("segwatch_capture_packets_total") + RI + "))"
panel("timeseries", "Capture loss ratio", [(drops + " / (" + pkts + " + " + drops + ")", "{{instance}}")], 8, 8, unit="percentunit",
      desc="Share of packets lost before analysis. Above 1% the sensor misses traffic.")
panel("timeseries", "Drops by stage", [("sum by (instance, stage) (rate(" + m("segwatch_capture_dropped_packets_total") + RI + "))", "{{instance}} {{stage}}")], 16, 8, unit="pps",
      desc="kernel and interface: libpcap statistics; queue: segwatch's reader found a worker's queue full.")
y[0] += 8
panel("timeseries", "Worker busy ratio", [("rate(" + m("segwatch_worker_busy_seconds_total") + RI + ")", "{{instance}} worker {{worker}}")], 0, 8, unit="percentunit",
      desc="Time each worker spends processing batches. Near 100% means drops are coming.")
panel("timeseries", "Worker queue depth", [(m("segwatch_worker_queue_batches"), "{{instance}} worker {{worker}}")], 8, 8, unit="short",
      desc="Batches waiting for each worker.")
panel("timeseries", "Latency (p99)", [
    ("max by (instance) (" + m("segwatch_batch_processing_seconds", 'quantile="0.99"') + ")", "{{instance}} batch processing"),
    ("max by (instance) (" + m("segwatch_decision_latency_seconds", 'quantile="0.99"') + ")", "{{instance}} packet to decision (live)")], 16, 8, unit="s",
      desc="From hdrhistogram summaries: time per batch, and for live capture the time from a packet's capture timestamp to the end of its processing.")
y[0] += 8
panel("timeseries", "Flows", [
    ("sum by (instance) (" + m("segwatch_flows_active") + ")", "{{instance}} active"),
    ("sum by (instance) (rate(" + m("segwatch_flows_created_total") + RI + "))", "{{instance}} created/s"),
    ("sum by (instance) (rate(" + m("segwatch_flows_evicted_total") + RI + "))", "{{instance}} evicted/s (table full)")], 0, 12, unit="short",
      desc="Flows tracked; evictions mean max_flows is too small or a flood is under way.")
panel("timeseries", "Decode problems", [("sum by (reason) (rate(" + m("segwatch_decode_problems_total") + RI + "))", "{{reason}}")], 12, 12, unit="pps",
      desc="Frames segwatch could not use, by reason.")
y[0] += 8
panel("timeseries", "Capture interface up, and reopens", [
    (m("segwatch_capture_up"), "{{instance}} {{interface}} up"),
    ("sum by (instance, interface) (increase(" + m("segwatch_capture_reopens_total") + RI + "))", "{{instance}} {{interface}} reopened")], 0, 24, h=6, unit="short",
      desc="Live capture: 1 while segwatch captures on the interface, 0 while it is down, without carrier or gone and segwatch retries; reopens after it came back.")
y[0] += 6
row("Segmentation")
R = "[$__range]"
panel("table", "Segmentation matrix (flows in the selected range)", [
    ("sum by (src_zone, dst_zone) (increase(" + m("segwatch_zone_pair_flows_total") + R + "))", "flows"),
    ("sum by (src_zone, dst_zone) (increase(" + m("segwatch_violation_flows_total") + R + "))", "denied"),
    ("sum by (src_zone, dst_zone) (increase(" + m("segwatch_violation_flows_total", 'outcome=~"established|closed"') + R + "))", "denied, got through")], 0, 12, h=10,
      desc="Each zone pair (initiator first): flows, flows the policy denies, and denied flows that got through (broken segmentation).",
      extra={"transformations": [{"id": "merge", "options": {}},
                                 {"id": "organize", "options": {"excludeByName": {"Time": True},
                                  "renameByName": {"Value #A": "flows", "Value #B": "denied", "Value #C": "denied, got through"}}}]})
panel("timeseries", "Traffic by zone pair", [("sum by (src_zone, dst_zone) (rate(" + m("segwatch_zone_pair_bytes_total") + RI + ")) * 8", "{{src_zone}} → {{dst_zone}}")], 12, 12, h=10, unit="bps",
      desc="Bits per second of judged flows, counted when flows end.")
y[0] += 10
panel("timeseries", "Violations by severity", [("sum by (severity) (rate(" + m("segwatch_violation_flows_total") + RI + "))", "{{severity}}")], 0, 12, unit="short",
      desc="Denied flows per second. critical: a denied connection into or out of the CDE worked.")
panel("timeseries", "Violation events written", [("sum by (severity) (increase(" + m("segwatch_violation_events_total") + RI + "))", "{{severity}}")], 12, 12, unit="short",
      desc="Deduplicated events written to the events file.")
y[0] += 8
panel("timeseries", "Denied flows by zone pair and outcome", [("sum by (src_zone, dst_zone, outcome) (rate(" + m("segwatch_violation_flows_total") + RI + "))", "{{src_zone}} → {{dst_zone}} {{outcome}}")], 0, 24, unit="short",
      desc="attempted: dropped by a firewall; rejected: refused; established/closed: the connection worked.")
y[0] += 8
row("Anomalies and baseline")
panel("timeseries", "Anomaly events by detector", [("sum by (detector) (increase(" + m("segwatch_anomaly_events_total") + RI + "))", "{{detector}}")], 0, 12, unit="short",
      desc="Anomalies written to the events file (after allowlists, the severity floor and suppression), by detector.")
panel("timeseries", "Anomaly events by severity", [("sum by (severity) (increase(" + m("segwatch_anomaly_events_total") + RI + "))", "{{severity}}")], 12, 12, unit="short",
      desc="high and critical: a new connection into the CDE, ARP impersonation, or large uploads far above normal.")
y[0] += 8
panel("stat", "Baseline learning", [("max by (instance) (" + m("segwatch_baseline_learning") + ")", "{{instance}}")], 0, 8, h=5, unit="bool_yes_no",
      desc="1 while the sensor learns its baseline (segwatch run --learn-for); new-peer, new-service, new-external and volume detectors wait for it.")
panel("stat", "Baseline in use", [("max by (instance) (" + m("segwatch_baseline_loaded") + ")", "{{instance}}")], 8, 8, h=5, unit="bool_yes_no",
      desc="1 when detectors compare traffic with a learned baseline.")
panel("stat", "Learning time left", [("max by (instance) (" + m("segwatch_baseline_learning_seconds_left") + ")", "{{instance}}")], 16, 8, h=5, unit="s",
      desc="Packet time left before the baseline is written and detection with it starts.")
dash = {
  "title": "segwatch", "uid": "segwatch-overview", "tags": ["segwatch", "network", "pci"],
  "timezone": "utc", "schemaVersion": 39, "version": 1, "editable": True, "refresh": "30s",
  "time": {"from": "now-6h", "to": "now"},
  "description": "segwatch passive network sensor: capture health, flows, segmentation, violations, anomalies and baseline state. Generated by configs/grafana/generate.py.",
  "templating": {"list": [
    {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0},
    {"name": "instance", "label": "Sensor", "type": "query", "datasource": ds,
     "query": {"query": "label_values(segwatch_build_info, instance)", "refId": "instance"},
     "definition": "label_values(segwatch_build_info, instance)", "includeAll": True, "multi": True,
     "current": {}, "refresh": 2, "hide": 0}]},
  "annotations": {"list": []},
  "panels": panels,
}
import os
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "segwatch-dashboard.json")
open(out, "w").write(json.dumps(dash, indent=2, ensure_ascii=False) + "\n")
