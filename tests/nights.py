"""Result records of several nights, written like a run writes them (results.write validates each against the
schema), for the report and site tests: three families (architectures) in two README tables, a model that
passes, one that fails tonight after passing, one that errors, and a model of another family."""

from __future__ import annotations

from pathlib import Path

from harness.records import history, results

NIGHTS = ["20261120-0100", "20261121-0100", "20261122-0100", "20261123-0100"]
# model -> (README table, documented, measured per night (None: an error that night)); ARCH: its family
ZOO = {
    "faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco": ("res2net", {"box_ap": 40.6}, [[40.5], [40.7], [40.6], [40.6]]),
    "mask_rcnn_res2net50_vb_26w_4s_fpn_2x_coco": (
        "res2net",
        {"box_ap": 42.4, "mask_ap": 38.1},
        [[42.3, 38.0], [42.5, 38.2], [42.4, 38.1], [41.2, 37.0]],
    ),
    "mask_rcnn_res2net50_vd_26w_4s_fpn_2x_coco": (
        "res2net",
        {"box_ap": 42.6, "mask_ap": 38.1},
        [[42.6, 38.1], None, None, None],
    ),
    "ppyoloe_crn_s_300e_coco": ("ppyoloe", {"box_ap": 43.0}, [[43.1], [43.0], [42.9], [43.0]]),
}
ARCH = {
    "faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco": "FasterRCNN",
    "mask_rcnn_res2net50_vb_26w_4s_fpn_2x_coco": "MaskRCNN",
    "mask_rcnn_res2net50_vd_26w_4s_fpn_2x_coco": "MaskRCNN",
    "ppyoloe_crn_s_300e_coco": "YOLOv3",  # PP-YOLOE's configs build ppdet's YOLOv3 architecture
}
NOTICE = "TEST DATA: made-up nights for the site's tests; no model was run."
LOG = "loading annotations into memory...\n<script>alert('log')</script>\nTotal sample number: 5000\n"


def record(model: str, night: int) -> dict:
    family, documented, per_night = ZOO[model]
    measured = per_night[night]
    run_id = NIGHTS[night]
    rec = {
        "model": model,
        "run_id": run_id,
        "zoo_index": list(ZOO).index(model),
        "started": f"2026-11-{20 + night}T01:00:00+00:00",
        "finished": f"2026-11-{20 + night}T02:{list(ZOO).index(model):02d}:00+00:00",
        "notice": NOTICE,
        "stack": "current",
        "device": "gpu",
        "device_name": "test data, no GPU",
        "paddle": "3.3.1",
        "documented": documented,
        "architecture": ARCH[model],
        "table": {"name": family, "weights_url": f"https://example.invalid/{model}.pdparams"},
        "artifacts": {"weights": {"url": f"https://example.invalid/{model}.pdparams", "sha256": "ab" * 32, "size": 9}},
    }
    if measured is None:
        rec["status"] = "error"
        rec["error"] = {"stage": "weights", "message": "checkpoint truncated", "log_tail": "Traceback: <b>bold</b>"}
        return rec
    metrics, status = {}, "pass"
    for (name, doc), value in zip(documented.items(), measured, strict=True):
        ok = abs(value - doc) <= 0.3 + 1e-9
        status = status if ok else "fail"
        metrics[name] = {
            "metric": name,
            "measured": value,
            "documented": doc,
            "tolerance": 0.3,
            "delta": round(value - doc, 2),
            "status": "pass" if ok else "fail",
            "reason": f"measured {value:.2f} vs documented {doc} ± 0.3",
        }
    stats = {"bbox": {k: 0.4 for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}}
    fps = 20.0 + night
    timing = {
        "backend": "dygraph",
        "device": "gpu",
        "device_name": "test data, no GPU",
        "fps": fps,
        "sample_ids": [1, 2, 3],
        "backends": {
            "dygraph": {
                "fps": fps,
                "iterations": 3,
                "seconds": 0.15,
                "latency_ms": {
                    "end_to_end": {"mean": 50.0, "p50": 49.0, "p90": 55.0, "p99": 60.0, "min": 45.0, "max": 61.0}
                },
                "config": {"precision": "fp32"},
            }
        },
    }
    weights = {
        "ok": True,
        "matched": 467,
        "missing": 0,
        "unexpected": 0,
        "mismatched": 0,
        "sha256": "ab" * 32,
        "size": 9,
    }
    return {**rec, "status": status, "metrics": metrics, "stats": stats, "timing": timing, "weight_check": weights}


def write_nights(root: Path, models: list[str] | None = None, nights: range | None = None) -> tuple[list[Path], Path]:
    """Run directories of the given nights (a worker.log beside each result), and the history of all of them."""
    runs = []
    hist = root / "history.jsonl"
    for night in nights if nights is not None else range(len(NIGHTS)):
        run_dir = root / "runs" / NIGHTS[night]
        recs = [record(m, night) for m in models or ZOO]
        for rec in recs:
            results.write(run_dir, rec)
            (run_dir / rec["model"] / "worker.log").write_text(LOG)
        history.append(hist, results.read([run_dir]))
        runs.append(run_dir)
    return runs, hist
