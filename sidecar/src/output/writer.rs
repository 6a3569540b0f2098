//! How lines are written: one JSON object per line, or aligned text.

use std::io::{self, BufWriter, Write};

use serde::Serialize;

use super::{Line, LostLine};
use crate::text;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// Aligned columns for a person, like libbpf-tools' execsnoop.
    Text,
}

impl Format {
    /// Text for a person at a terminal running `trace`; JSON for programs,
    /// log collectors and every pod.
    pub fn default_for(trace: bool, stdout_is_terminal: bool) -> Format {
        if trace && stdout_is_terminal {
            Format::Text
        } else {
            Format::Json
        }
    }
}
/// Buffered stdout: a batch of lines goes out in one write.
pub struct Writer<W: Write> {
    out: BufWriter<W>,
    format: Format,
    header_written: bool,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, format: Format) -> Self {
        Writer {
            out: BufWriter::with_capacity(64 * 1024, out),
            format,
            header_written: false,
        }
    }

    pub fn write(&mut self, line: &Line<'_>) -> io::Result<()> {
        self.emit(line, |out, line| text::write_line(out, line))
    }

    pub fn write_lost(&mut self, line: &LostLine<'_>) -> io::Result<()> {
        self.emit(line, |out, line| text::write_lost(out, line))
    }

    /// One JSON object, or one text row (the first after the header).
    fn emit<T: Serialize>(
        &mut self,
        line: &T,
        text_row: impl FnOnce(&mut BufWriter<W>, &T) -> io::Result<()>,
    ) -> io::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, line)?;
                self.out.write_all(b"\n")
            }
            Format::Text => {
                if !self.header_written {
                    self.header_written = true;
                    text::write_header(&mut self.out)?;
                }
                text_row(&mut self.out, line)
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
impl Writer<Vec<u8>> {
    pub fn into_bytes(self) -> Vec<u8> {
        self.out.into_inner().expect("a Vec takes every write")
    }
}
