//! Presenting [`Results`]: a table for people (workload | kernel | fuse2fs |
//! fsvc | fsvc/fuse2fs | fsvc/kernel) and JSON lines for machines.
//!
//! Invariants: every row appears for every system; a missing or failed
//! system shows as such in its cell (and in JSON as `status`), never as a
//! dropped row. Ratios are fsvc's rate over the peer's (above 1 means fsvc
//! is faster; for RSS, above 1 means fsvc uses more memory).

use std::fmt::Write as _;

use super::mounts::System;
use super::{Cell, Results, Temp};

/// Row label of the peak-RSS row.
const RSS_ROW: &str = "peak RSS of server (MiB)";

fn row_label(w: super::workload::Workload, t: Temp) -> String {
    format!("{} {} ({})", w.name(), t.name(), w.unit())
}

/// Labels of every row the table prints, in order.
pub fn row_labels() -> Vec<String> {
    let mut v = Vec::new();
    for w in super::workload::Workload::ALL {
        for t in [Temp::Cold, Temp::Warm] {
            v.push(row_label(w, t));
        }
    }
    v.push(RSS_ROW.to_string());
    v
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn fmt_cell(c: Option<&Cell>, scale: f64) -> String {
    match c {
        Some(Cell::Samples(_)) => c
            .and_then(Cell::median)
            .map(|m| fmt_num(m * scale))
            .unwrap_or_else(|| "no data".into()),
        Some(Cell::Failed(_)) => "FAILED".into(),
        Some(Cell::Missing(_)) => "missing".into(),
        None => "-".into(),
    }
}

fn ratio(a: Option<&Cell>, b: Option<&Cell>) -> String {
    match (a.and_then(Cell::median), b.and_then(Cell::median)) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// The human-readable table (markdown, so it can go into a note as is),
/// followed by the reasons for every failed or missing cell.
pub fn table(r: &Results) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "workload".into(),
        "kernel".into(),
        "fuse2fs".into(),
        "fsvc".into(),
        "fsvc/fuse2fs".into(),
        "fsvc/kernel".into(),
    ]];
    let mut notes = Vec::new();
    let mut add = |label: String, cells: &std::collections::BTreeMap<System, Cell>, scale: f64| {
        let get = |s| cells.get(&s);
        rows.push([
            label.clone(),
            fmt_cell(get(System::Kernel), scale),
            fmt_cell(get(System::Fuse2fs), scale),
            fmt_cell(get(System::Fsvc), scale),
            ratio(get(System::Fsvc), get(System::Fuse2fs)),
            ratio(get(System::Fsvc), get(System::Kernel)),
        ]);
        for (s, c) in cells {
            match c {
                Cell::Failed(why) => {
                    notes.push(format!("{} on {}: FAILED: {why}", label, s.name()))
                }
                Cell::Missing(why) if label != RSS_ROW || *s != System::Kernel => {
                    notes.push(format!("{} on {}: missing: {why}", label, s.name()))
                }
                _ => {}
            }
        }
    };
    for ((w, t), cells) in &r.rates {
        add(row_label(*w, *t), cells, 1.0);
    }
    add(RSS_ROW.to_string(), &r.peak_rss_kib, 1.0 / 1024.0);

    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let c = &r.config;
    let _ = writeln!(
        out,
        "fsvc-bench: image {} MiB (block {} B, inode {} B); large files {} MiB; {} small files of 4 KiB in {} dirs; median of {} runs",
        r.image_bytes >> 20,
        r.geometry.block_size,
        r.geometry.inode_size,
        c.size_mib,
        c.files,
        c.dirs,
        c.reps
    );
    for (i, row) in rows.iter().enumerate() {
        out.push('|');
        for (j, cell) in row.iter().enumerate() {
            if j == 0 {
                let _ = write!(out, " {:<w$} |", cell, w = widths[j]);
            } else {
                let _ = write!(out, " {:>w$} |", cell, w = widths[j]);
            }
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for (j, w) in widths.iter().enumerate() {
                let dashes = "-".repeat(*w);
                if j == 0 {
                    let _ = write!(out, "-{dashes}-|");
                } else {
                    let _ = write!(out, "-{dashes}:|");
                }
            }
            out.push('\n');
        }
    }
    for n in notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

/// Escapes a string for a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_cell(out: &mut String, workload: &str, temp: &str, unit: &str, system: System, c: &Cell) {
    let head = format!(
        "{{\"type\":\"result\",\"workload\":{},\"temp\":{},\"unit\":{},\"system\":{}",
        json_str(workload),
        json_str(temp),
        json_str(unit),
        json_str(system.name())
    );
    let _ = match c {
        Cell::Samples(v) => {
            let samples: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
            let median = c.median().map_or("null".into(), |m| format!("{m:.3}"));
            writeln!(
                out,
                "{head},\"status\":\"ok\",\"median\":{median},\"samples\":[{}]}}",
                samples.join(",")
            )
        }
        Cell::Failed(why) => writeln!(
            out,
            "{head},\"status\":\"failed\",\"reason\":{}}}",
            json_str(why)
        ),
        Cell::Missing(why) => writeln!(
            out,
            "{head},\"status\":\"missing\",\"reason\":{}}}",
            json_str(why)
        ),
    };
}

/// JSON lines: one `config` line, then one `result` line per (row, system).
pub fn json_lines(r: &Results) -> String {
    let c = &r.config;
    let mut out = format!(
        "{{\"type\":\"config\",\"image_bytes\":{},\"block_size\":{},\"inode_size\":{},\"size_mib\":{},\"files\":{},\"dirs\":{},\"reps\":{}}}\n",
        r.image_bytes, r.geometry.block_size, r.geometry.inode_size, c.size_mib, c.files, c.dirs, c.reps
    );
    for ((w, t), cells) in &r.rates {
        for (s, cell) in cells {
            json_cell(&mut out, w.name(), t.name(), w.unit(), *s, cell);
        }
    }
    for (s, cell) in &r.peak_rss_kib {
        json_cell(&mut out, "peak_rss", "-", "KiB", *s, cell);
    }
    out
}
