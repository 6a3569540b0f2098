//! `linnix-sidecar report`: a tracer's JSON lines (a file, or stdin as from
//! `kubectl logs`) as one self-contained HTML page: a lane per container,
//! the process tree over time, OOM kills, pressure and lost events.
//!
//! Runs no BPF and needs no privilege: it only reads text.

mod describe;
mod model;
mod page;
mod parse;
mod svg;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::Path;

use crate::cli::{CommonArgs, ReportArgs};

/// Reads the log, writes the page; returns the exit code. Lines that are
/// not events are reported on stderr (and on the page), never dropped in
/// silence; a log with no event at all is an error.
pub fn run(args: &ReportArgs, common: &CommonArgs) -> u8 {
    // The tracer's options are global on the command line; here they would
    // do nothing, and ignoring them in silence would hide a mistake.
    let given = tracer_options(common);
    if !given.is_empty() {
        eprintln!(
            "error: report draws a log and takes none of the tracer's options: {}",
            given.join(", ")
        );
        return 2;
    }
    let from_stdin = args.input.as_deref().is_none_or(|p| p == Path::new("-"));
    let source = if from_stdin {
        "stdin".to_owned()
    } else {
        args.input
            .as_deref()
            .unwrap_or(Path::new("-"))
            .display()
            .to_string()
    };
    let parsed = if from_stdin {
        parse::read(io::stdin().lock())
    } else {
        File::open(&source).and_then(|f| parse::read(BufReader::new(f)))
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot read {source}: {e}");
            return 1;
        }
    };
    for (s, what) in [
        (&parsed.bad, "are not events of the tracer's schema"),
        (
            &parsed.unknown,
            "are events of a kind this version does not draw",
        ),
    ] {
        if let Some(first) = s.first_line {
            eprintln!(
                "warning: {} lines of {source} {what}; the first is line {first}: {}",
                s.count, s.first_reason
            );
        }
    }
    if parsed.events.is_empty() {
        eprintln!(
            "error: no events in {source} ({} lines): nothing to draw",
            parsed.lines
        );
        return 2;
    }
    let html = render(&parsed, &source);
    let written = match &args.out {
        Some(path) => std::fs::write(path, html.as_bytes()),
        None => io::stdout().lock().write_all(html.as_bytes()),
    };
    if let Err(e) = written {
        let to = args
            .out
            .as_deref()
            .map_or("stdout".to_owned(), |p| p.display().to_string());
        eprintln!("error: cannot write the page to {to}: {e}");
        return 1;
    }
    0
}

/// The tracer options set to something other than their defaults.
fn tracer_options(c: &CommonArgs) -> Vec<&'static str> {
    let defaults = [
        (c.metrics_addr.is_some(), "--metrics-addr"),
        (c.threads, "--threads"),
        (c.max_events_per_sec != 10_000, "--max-events-per-sec"),
        (c.removed_series_ttl != 300, "--removed-series-ttl"),
        (
            c.memory_pressure_threshold != 90,
            "--memory-pressure-threshold",
        ),
        (
            c.memory_pressure_interval != std::time::Duration::from_secs(10),
            "--memory-pressure-interval",
        ),
        (c.output.is_some(), "--output"),
        (c.ignore_exec_probes, "--ignore-exec-probes"),
    ];
    defaults
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
}

fn render(parsed: &parse::Parsed, source: &str) -> String {
    let timeline = model::build(&parsed.events);
    page::render(parsed, &timeline, source)
}

/// Text made safe for HTML text and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
