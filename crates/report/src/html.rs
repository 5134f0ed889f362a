//! The report as one self-contained HTML file: inline SVG charts, inline PNG thumbnails,
//! inline CSS, no script, no font or any other external resource. The markup is also
//! well-formed XML (void elements closed, attributes quoted, only XML's five entities), and a
//! JSON copy of every plotted number sits in `<pre id="wrnc-report-data">`.

use crate::charts::{confusion_heat_map, line_chart, smooth, LineChart, Series, PALETTE};
use crate::data::{RunReport, StepRow};
use crate::error::Result;
use crate::thumbnail::png_data_url;
use plotters::prelude::SeriesLabelPosition;
use serde_json::json;

/// The `id` of the element holding the JSON copy of the plotted numbers.
pub const DATA_ELEMENT_ID: &str = "wrnc-report-data";

/// Most points of the per-step chart (longer runs are thinned evenly; the JSON copy holds the
/// points drawn).
pub const MAX_STEP_POINTS: usize = 4000;

/// The smoothing weight of the per-step loss (an exponential moving average, debiased as
/// TensorBoard does).
pub const STEP_SMOOTHING: f64 = 0.9;

/// Escapes text for HTML and XML (content and attribute values).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0;
  color: #222; background: #f6f7f9; }
main { max-width: 1340px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 8px 12px; margin: 8px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; min-width: 150px; }
.card .v { font-size: 22px; font-weight: 600; }
.card .k { font-size: 12px; color: #666; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 0; padding: 6px; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 12px; color: #555; padding: 4px 6px 2px; max-width: 620px; }
table { border-collapse: collapse; background: #fff; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #eef0f3; }
.split { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.thumbs { display: flex; flex-wrap: wrap; gap: 10px; }
.thumb { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 6px; text-align: center; font-size: 12px; width: 120px; }
.thumb img { image-rendering: pixelated; width: 64px; height: 64px; }
.wrong { color: #b00020; }
pre.spec { background: #fff; border: 1px solid #ddd; padding: 8px; font-size: 12px; overflow: auto; max-height: 480px; }
";

/// An SVG from plotters, ready to inline (no XML prolog).
fn inline_svg(svg: &str) -> &str {
    let s = svg.trim_start();
    match s.strip_prefix("<?xml") {
        Some(rest) => rest.find("?>").map_or(s, |i| rest[i + 2..].trim_start()),
        None => s,
    }
}

fn figure(out: &mut String, svg: &str, caption: &str) {
    out.push_str("<figure class=\"chart\">");
    out.push_str(inline_svg(svg));
    out.push_str(&format!(
        "<figcaption>{}</figcaption></figure>\n",
        escape(caption)
    ));
}

/// The per-step rows drawn: all of them, or `MAX_STEP_POINTS` spread evenly (first and last
/// included).
fn thinned(steps: &[StepRow]) -> Vec<usize> {
    let n = steps.len();
    if n <= MAX_STEP_POINTS {
        return (0..n).collect();
    }
    let k = MAX_STEP_POINTS - 1;
    let mut idx: Vec<usize> = (0..=k).map(|i| i * (n - 1) / k).collect();
    idx.dedup();
    idx
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// Renders the report.
pub fn render(r: &RunReport) -> Result<String> {
    let split = if r.eval_split.is_empty() {
        "val"
    } else {
        r.eval_split.as_str()
    };
    let ep = &r.epochs;
    let xy = |f: &dyn Fn(&crate::data::EpochRow) -> f64| -> Vec<(f64, f64)> {
        ep.iter().map(|e| (e.epoch as f64, f(e))).collect()
    };
    let (train_loss, val_loss) = (xy(&|e| e.train_loss), xy(&|e| e.val_loss));
    let (train_acc, val_acc) = (xy(&|e| e.train_acc * 100.0), xy(&|e| e.val_acc * 100.0));
    let lr = xy(&|e| e.lr);
    let speed = xy(&|e| e.images_per_sec);
    let drawn = thinned(&r.steps);
    let all_steps: Vec<(f64, f64)> = r.steps.iter().map(|s| (s.step as f64, s.loss)).collect();
    let smoothed_all = smooth(&all_steps, STEP_SMOOTHING);
    let raw: Vec<(f64, f64)> = drawn.iter().map(|&i| all_steps[i]).collect();
    let smoothed: Vec<(f64, f64)> = drawn.iter().map(|&i| smoothed_all[i]).collect();

    let series = |label: &str, points, color, faint| Series {
        label: label.to_string(),
        points,
        color,
        faint,
    };
    let mut charts: Vec<(String, String)> = Vec::new();
    charts.push((
        line_chart(&LineChart {
            title: "Loss per epoch",
            x_label: "epoch",
            y_label: "cross-entropy loss (nats)",
            series: vec![
                series("train", &train_loss, PALETTE[0], false),
                series(split, &val_loss, PALETTE[1], false),
            ],
            markers: true,
            legend: SeriesLabelPosition::UpperRight,
            y_floor: Some(0.0),
        })?,
        format!(
            "Mean training loss over each epoch's batches (train mode, augmented) and the loss on \
             the {split} split after the epoch (eval mode)."
        ),
    ));
    charts.push((
        line_chart(&LineChart {
            title: "Accuracy per epoch",
            x_label: "epoch",
            y_label: "top-1 accuracy (%)",
            series: vec![
                series("train", &train_acc, PALETTE[0], false),
                series(split, &val_acc, PALETTE[1], false),
            ],
            markers: true,
            legend: SeriesLabelPosition::LowerRight,
            y_floor: Some(0.0),
        })?,
        format!("Training accuracy (augmented batches, train mode) and {split} accuracy."),
    ));
    charts.push((
        line_chart(&LineChart {
            title: "Loss per step",
            x_label: "optimiser step",
            y_label: "batch loss (nats)",
            series: vec![
                series("raw", &raw, PALETTE[0], true),
                series(
                    &format!("smoothed (EMA {STEP_SMOOTHING})"),
                    &smoothed,
                    PALETTE[0],
                    false,
                ),
            ],
            markers: false,
            legend: SeriesLabelPosition::UpperRight,
            y_floor: Some(0.0),
        })?,
        format!(
            "Each step's batch loss (faint) and its exponential moving average (weight \
             {STEP_SMOOTHING}, debiased as TensorBoard does){}.",
            if drawn.len() < r.steps.len() {
                format!(", {} of {} steps drawn", drawn.len(), r.steps.len())
            } else {
                String::new()
            }
        ),
    ));
    charts.push((
        line_chart(&LineChart {
            title: "Learning rate",
            x_label: "epoch",
            y_label: "learning rate",
            series: vec![series("lr", &lr, PALETTE[2], false)],
            markers: true,
            legend: SeriesLabelPosition::UpperRight,
            y_floor: Some(0.0),
        })?,
        "The learning rate of each epoch (the schedule, warmup included).".to_string(),
    ));
    charts.push((
        line_chart(&LineChart {
            title: "Training throughput",
            x_label: "epoch",
            y_label: "images / s",
            series: vec![series("train", &speed, PALETTE[3], false)],
            markers: true,
            legend: SeriesLabelPosition::LowerRight,
            y_floor: Some(0.0),
        })?,
        "Training images per second of each epoch (steps only, evaluation excluded).".to_string(),
    ));

    let mut h = String::new();
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\" xmlns=\"http://www.w3.org/1999/xhtml\">\n<head>\n",
    );
    h.push_str("<meta charset=\"utf-8\" />\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\" />\n");
    h.push_str(&format!(
        "<title>wrnc report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(&r.title)
    ));
    h.push_str(&format!("<h1>Run report: {}</h1>\n", escape(&r.title)));
    for note in &r.notes {
        h.push_str(&format!("<p class=\"note\">{}</p>\n", escape(note)));
    }

    // Headline figures.
    h.push_str("<div class=\"cards\">\n");
    let card = |h: &mut String, k: &str, v: String| {
        h.push_str(&format!(
            "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>\n",
            escape(&v),
            escape(k)
        ));
    };
    if let Some(last) = ep.last() {
        card(&mut h, "epochs completed", last.epoch.to_string());
        card(
            &mut h,
            &format!("{split} accuracy, last epoch"),
            pct(last.val_acc),
        );
        if let Some(best) = ep
            .iter()
            .max_by(|a, b| a.val_acc.total_cmp(&b.val_acc).then(b.epoch.cmp(&a.epoch)))
        {
            card(
                &mut h,
                &format!("best {split} accuracy (epoch {})", best.epoch),
                pct(best.val_acc),
            );
        }
        let wall: f64 = ep.iter().map(|e| e.seconds).sum();
        card(&mut h, "training wall time", format!("{wall:.1} s"));
    }
    if let Some(c) = &r.classes {
        card(
            &mut h,
            &format!("{} accuracy of {}", c.split, c.weights_file),
            pct(c.accuracy),
        );
        if let Some(t5) = c.top5 {
            card(&mut h, &format!("{} top-5 accuracy", c.split), pct(t5));
        }
    }
    h.push_str("</div>\n");

    h.push_str("<h2>Training curves</h2>\n<div class=\"charts\">\n");
    for (svg, caption) in &charts {
        figure(&mut h, svg, caption);
    }
    h.push_str("</div>\n");

    h.push_str("<h2>Test results of the exported weights</h2>\n");
    match &r.classes {
        Some(c) => {
            h.push_str(&format!(
                "<p>{} on the {} split: {} images, accuracy {}{}.</p>\n",
                escape(&c.weights_file),
                escape(&c.split),
                c.count,
                pct(c.accuracy),
                c.top5
                    .map(|t| format!(", top-5 accuracy {}", pct(t)))
                    .unwrap_or_default()
            ));
            h.push_str("<div class=\"split\">\n");
            let cm = confusion_heat_map("Confusion matrix", &c.class_names, &c.confusion_matrix)?;
            figure(
                &mut h,
                &cm,
                "Rows: true class; columns: predicted class. Each cell holds the number of \
                 images; its colour is the share of the true class' images (the row).",
            );
            h.push_str(
                "<table class=\"per-class\">\n<thead><tr><th>class</th><th>precision</th>\
                        <th>recall</th><th>F1</th><th>support</th></tr></thead>\n<tbody>\n",
            );
            for p in &c.per_class {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>\n",
                    escape(&p.name),
                    p.precision,
                    p.recall,
                    p.f1,
                    p.support
                ));
            }
            h.push_str("</tbody>\n</table>\n</div>\n");
        }
        None => h.push_str(&format!(
            "<p class=\"note\">No per-class results: {}</p>\n",
            escape(
                r.classes_missing
                    .as_deref()
                    .unwrap_or("no evaluation was made")
            )
        )),
    }

    if !r.mistakes.is_empty() {
        h.push_str("<h2>Most confidently wrong test images</h2>\n<div class=\"thumbs\">\n");
        for m in &r.mistakes {
            h.push_str(&format!(
                "<div class=\"thumb\"><img src=\"{}\" alt=\"test image {}\" width=\"64\" \
                 height=\"64\" /><br />#{}<br />true: {}<br /><span class=\"wrong\">predicted: \
                 {}</span><br />p = {:.3}</div>\n",
                png_data_url(&m.image)?,
                m.index,
                m.index,
                escape(&m.truth),
                escape(&m.predicted),
                m.probability
            ));
        }
        h.push_str("</div>\n");
    }

    h.push_str("<h2>Run</h2>\n<table class=\"facts\">\n<tbody>\n");
    for (k, v) in &r.facts {
        h.push_str(&format!(
            "<tr><th>{}</th><td style=\"text-align:left\">{}</td></tr>\n",
            escape(k),
            escape(v)
        ));
    }
    h.push_str("</tbody>\n</table>\n");
    h.push_str(&format!(
        "<details><summary>Resolved spec</summary>\n<pre class=\"spec\">{}</pre>\n</details>\n",
        escape(&r.spec_yaml)
    ));

    let data = json!({
        "format": 1,
        "eval_split": split,
        "epochs": r.epochs,
        "steps": {
            "step": drawn.iter().map(|&i| r.steps[i].step).collect::<Vec<_>>(),
            "loss": raw.iter().map(|p| p.1).collect::<Vec<_>>(),
            "smoothed": smoothed.iter().map(|p| p.1).collect::<Vec<_>>(),
        },
        "classes": r.classes,
    });
    h.push_str(&format!(
        "<pre id=\"{DATA_ELEMENT_ID}\" hidden=\"hidden\">{}</pre>\n",
        escape(&data.to_string())
    ));
    h.push_str("</main>\n</body>\n</html>\n");
    Ok(h)
}
